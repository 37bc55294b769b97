module github.com/golibtls/libtls

go 1.24
