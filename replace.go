package sendfile2

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"

	"github.com/sendfile2/sendfile2/internal/replace"
)

// TempPrefix starts the names of the temporary files of CreateReplacement.
// A server that stores files by the names its clients give should refuse
// names that start with it.
const TempPrefix = ".sendfile2-upload-"

// ErrNotRegular is matched by the error of CreateReplacement and Commit
// when the target exists and is not a regular file (a directory, a symbolic
// link, a FIFO): neither replaces it.
var ErrNotRegular = errors.New("not a regular file")

// Replacement is the new content of a file being written: a temporary file
// in the target's directory that Commit renames over the target once it is
// complete and on stable storage, or that Abort removes. Readers of the
// target see the old file or the new one, whole; a crash or a failure
// leaves the old file (and at most a temporary file that no rename will
// ever expose, after a crash).
type Replacement struct {
	r *replace.File
}

// CreateReplacement creates a temporary file for the new content of name
// under root: in name's directory (opened once, so that a concurrent rename
// of a parent cannot split the temporary file from the rename), named
// TempPrefix and 16 random hexadecimal digits, with the permissions perm,
// open for writing. name uses slashes; the root keeps it, and symbolic
// links, inside. The directory must exist. A target that exists and is not
// a regular file gives an error matching ErrNotRegular.
func CreateReplacement(root *os.Root, name string, perm fs.FileMode) (*Replacement, error) {
	dirName, base := path.Split(name)
	if base == "" || base == "." || base == ".." {
		return nil, fmt.Errorf("sendfile2: replace %q: not a file name: %w", name, os.ErrInvalid)
	}
	if dirName == "" {
		dirName = "."
	}
	dir, err := root.OpenRoot(dirName)
	if err != nil {
		return nil, err
	}
	r, err := createIn(dir, base, perm)
	if err != nil {
		dir.Close()
		return nil, err
	}
	return r, nil
}

// CreateReplacementPath is CreateReplacement for a path of the file
// system: the temporary file is made in its directory.
func CreateReplacementPath(name string, perm fs.FileMode) (*Replacement, error) {
	dirName, base := filepath.Split(name)
	if dirName == "" {
		dirName = "."
	}
	root, err := os.OpenRoot(dirName)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	return CreateReplacement(root, base, perm)
}

// createIn makes the temporary file for base in dir.
func createIn(dir *os.Root, base string, perm fs.FileMode) (*Replacement, error) {
	r, err := replace.Create(dir, base, TempPrefix, perm)
	if err != nil {
		return nil, replaceError(err)
	}
	return &Replacement{r}, nil
}

// replaceError gives the errors of internal/replace the package's prefix and
// sentinel.
func replaceError(err error) error {
	var nr *replace.NotRegularError
	var ds *replace.DirSyncError
	switch {
	case errors.As(err, &nr):
		return fmt.Errorf("sendfile2: replace %s: %v: %w", nr.Name, nr.Type, ErrNotRegular)
	case errors.As(err, &ds):
		return fmt.Errorf("sendfile2: replace %s: fsync of the directory after the rename: %w", ds.Name, ds.Err)
	case errors.Is(err, replace.ErrNoFreeName):
		return fmt.Errorf("sendfile2: replace %w", err)
	}
	return err
}

// File is the temporary file, open for writing: write the new content to
// it (ReceiveBody, Receive), and neither close nor rename it.
func (r *Replacement) File() *os.File { return r.r.File() }

// Committed says what Commit did.
type Committed struct {
	// Renamed reports that the new file is in place: true after a Commit
	// without error, and after one whose only failure was the fsync(2) of
	// the directory (the rename may then not survive a crash).
	Renamed bool
	// Replaced reports that a file was there before, and was replaced.
	Replaced bool
	// Info describes the new file.
	Info fs.FileInfo
}

// Commit makes the temporary file the target: fsync(2), so that the rename
// can never expose a file whose data a crash lost, the rename over the
// target, then fsync(2) of the directory, so that a Commit without error
// means the new file survives a crash. After an error the target is the old
// file, and the temporary file is gone, unless Committed.Renamed is set. A
// target that has become something other than a regular file is left as it
// is (ErrNotRegular). Commit closes the temporary file and the directory;
// call it, or Abort, once.
func (r *Replacement) Commit() (Committed, error) {
	c, err := r.r.Commit()
	return Committed{Renamed: c.Renamed, Replaced: c.Replaced, Info: c.Info}, replaceError(err)
}

// Abort closes and removes the temporary file, and leaves the target as it
// was.
func (r *Replacement) Abort() error { return r.r.Abort() }
