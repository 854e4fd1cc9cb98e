module cryptopulse/tools

go 1.26.8
