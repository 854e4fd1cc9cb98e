module cryptopulse/libs

go 1.26.8
