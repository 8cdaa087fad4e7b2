package sendfile2

import (
	"context"
	"fmt"
	"os"
	"syscall"
)

// SendWithHeader sends hdr from memory, then count bytes of src from offset,
// to dst, with the guarantee of Send for both: when it returns, the kernel
// holds no reference to hdr or to src's pages. It returns the bytes sent,
// header included; count < 0 sends the file from offset to its end, as with
// Send. This is the reverse proxy's and the file server's
// response: headers and body, in as few submissions as the method allows.
//
// URing copies the header into the first registered buffer, ahead of the
// file's first bytes, so that both leave in one IORING_OP_SEND_ZC, submitted
// together with the read that fills the buffer. URingMmap submits a copying
// IORING_OP_SEND of the header with MSG_MORE linked before the zero-copy
// sends of the body. Copy puts a small header in the same buffer and send(2)
// as the start of the file. The other methods send the header first with
// MSG_MORE.
func (s *Sender) SendWithHeader(ctx context.Context, dst syscall.Conn, hdr []byte, src *os.File, offset, count int64) (int64, error) {
	if src == nil {
		return 0, fmt.Errorf("sendfile2: send: nil src: %w", os.ErrInvalid)
	}
	return s.send(ctx, dst, hdr, src, offset, count)
}
