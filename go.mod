module pingate

go 1.26.8
