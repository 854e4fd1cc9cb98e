module cryptopulse/services/auth

go 1.26.8
