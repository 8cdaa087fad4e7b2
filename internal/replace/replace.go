package replace

import (
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
)

// ErrNoFreeName: every random name tried for the temporary file was taken.
var ErrNoFreeName = errors.New("no free name for a temporary file")

// NotRegularError reports a target that exists and is not a regular file.
type NotRegularError struct {
	Name string
	Type fs.FileMode
}

func (e *NotRegularError) Error() string {
	return fmt.Sprintf("%s: %v: not a regular file", e.Name, e.Type)
}

// File is a temporary file in dir that Commit renames over name, or that
// Abort removes.
type File struct {
	dir     *os.Root // the target's directory, open for the whole replacement
	name    string   // the target's name in dir
	file    *os.File // the temporary file, open for writing
	tmpName string   // its name in dir
}

// Create makes the temporary file for base in dir, named prefix and 16
// random hexadecimal digits. A target that exists and is not a regular file
// gives a *NotRegularError. On success the File owns dir.
func Create(dir *os.Root, base, prefix string, perm fs.FileMode) (*File, error) {
	if fi, err := dir.Lstat(base); err == nil && !fi.Mode().IsRegular() {
		return nil, &NotRegularError{Name: base, Type: fi.Mode().Type()}
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	for range 100 {
		tmpName := fmt.Sprintf("%s%016x", prefix, rand.Uint64())
		f, err := dir.OpenFile(tmpName, os.O_CREATE|os.O_EXCL|os.O_WRONLY, perm)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		return &File{dir: dir, name: base, file: f, tmpName: tmpName}, nil
	}
	return nil, fmt.Errorf("%s: %w", base, ErrNoFreeName)
}

// File is the temporary file, open for writing.
func (r *File) File() *os.File { return r.file }

// Name is the target's name in its directory.
func (r *File) Name() string { return r.name }

// Result says what Commit did.
type Result struct {
	Renamed, Replaced bool
	Info              fs.FileInfo
}

// DirSyncError is the failure of the fsync(2) of the directory after the
// rename.
type DirSyncError struct {
	Name string
	Err  error
}

func (e *DirSyncError) Error() string {
	return "fsync of the directory after the rename: " + e.Err.Error()
}
func (e *DirSyncError) Unwrap() error { return e.Err }

// Commit fsyncs the temporary file, renames it over the target unless the
// target has become something other than a regular file (*NotRegularError),
// then fsyncs the directory (*DirSyncError). It closes the temporary file
// and the directory; after an error the temporary file is gone unless
// Result.Renamed is set.
func (r *File) Commit() (Result, error) {
	defer r.dir.Close()
	var c Result
	err := r.file.Sync()
	if err == nil {
		c.Info, err = r.file.Stat()
	}
	if err != nil {
		r.file.Close()
		r.dir.Remove(r.tmpName)
		return c, err
	}
	if err := r.file.Close(); err != nil {
		r.dir.Remove(r.tmpName)
		return c, err
	}
	if old, err := r.dir.Lstat(r.name); err == nil {
		if !old.Mode().IsRegular() { // changed since Create
			r.dir.Remove(r.tmpName)
			return c, &NotRegularError{Name: r.name, Type: old.Mode().Type()}
		}
		c.Replaced = true
	}
	if err := r.dir.Rename(r.tmpName, r.name); err != nil {
		r.dir.Remove(r.tmpName)
		return Result{}, err
	}
	c.Renamed = true
	d, err := r.dir.Open(".")
	if err == nil {
		err = d.Sync()
		d.Close()
	}
	if err != nil {
		return c, &DirSyncError{Name: r.name, Err: err}
	}
	return c, nil
}

// Abort closes and removes the temporary file, and closes the directory.
func (r *File) Abort() error {
	r.file.Close()
	err := r.dir.Remove(r.tmpName)
	r.dir.Close()
	return err
}
