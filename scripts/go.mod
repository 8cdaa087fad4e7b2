module github.com/sendfile2/sendfile2/scripts

go 1.26.0

require (
	github.com/dustin/go-humanize v1.1.0
	github.com/sendfile2/sendfile2 v0.0.0-00010101000000-000000000000
	golang.org/x/sys v0.50.0
)

require golang.org/x/sync v0.25.0 // indirect

replace github.com/sendfile2/sendfile2 => ..
