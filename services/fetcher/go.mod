module cryptopulse/services/fetcher

go 1.26.8
