module github.com/sendfile2/sendfile2/examples/fasthttp

go 1.26.0

require (
	github.com/sendfile2/sendfile2 v0.0.0-00010101000000-000000000000
	github.com/valyala/fasthttp v1.79.0
)

require (
	github.com/klauspost/compress v1.20.4 // indirect
	github.com/molecule-man/go-brrr v1.3.1 // indirect
	github.com/valyala/bytebufferpool v1.0.0 // indirect
	golang.org/x/sync v0.25.0 // indirect
	golang.org/x/sys v0.50.0 // indirect
)

replace github.com/sendfile2/sendfile2 => ../..
