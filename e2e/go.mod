module cryptopulse/e2e

go 1.26.8
