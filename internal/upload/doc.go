// Package upload holds the mechanism of a request body received on a conn
// hijacked from net/http: "100 Continue", the bytes net/http buffered with
// the head, the rest through a receive function (or a copy), and the
// response written on the conn before it closes, draining an unread body.
package upload
