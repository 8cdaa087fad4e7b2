# sendfile2 serve in a container. Build from the root of the repository:
#
#   docker build -t sendfile2 .
#   docker run --rm -p 8080:8080 -v /srv/www:/srv/www:ro sendfile2
#
# Docker's default seccomp profile refuses io_uring (io_uring_setup,
# io_uring_enter and io_uring_register are not in its allow-list, so they
# fail with EPERM): auto then sends with msgzc (MSG_ZEROCOPY), which keeps
# the guarantee. `docker run --rm sendfile2 probe` says so and why;
# docs/SERVICE.md says how to allow io_uring.

FROM golang:1.26 AS build
WORKDIR /src
# The command is a module of its own that builds against the library in the
# same checkout (a replace in its go.mod): copy both, download, then build.
COPY go.mod go.sum ./
COPY cmd/sendfile2/go.mod cmd/sendfile2/go.sum ./cmd/sendfile2/
RUN cd cmd/sendfile2 && GOWORK=off go mod download
COPY . .
# Static (no cgo), so the runtime image needs no libc. The build context
# leaves out .git (.dockerignore): `sendfile2 version` then says the
# revision is unknown.
RUN cd cmd/sendfile2 && CGO_ENABLED=0 GOWORK=off go build -trimpath -buildvcs=false -o /out/sendfile2 .

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/sendfile2 /usr/local/bin/sendfile2
USER nonroot:nonroot
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/sendfile2"]
# Listen on every address of the container; the files go in /srv/www.
CMD ["serve", "--addr", ":8080", "--access-log", "--log-format", "json", "/srv/www"]
