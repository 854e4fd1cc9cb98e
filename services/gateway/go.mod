module cryptopulse/services/gateway

go 1.26.8
