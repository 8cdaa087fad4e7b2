package main

import (
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"strings"
	"time"
)

// Bounds of the walk that looks for stale uploads: DIR may be a large tree.
const (
	staleMaxEntries = 1_000_000
	staleMaxDepth   = 64
)

var errWalkBound = errors.New("bound reached")

// staleAge is how long a temporary upload file must have gone unmodified
// to be taken for one a killed serve left. An upload in progress writes its
// file whenever bytes come, and one that gets none for --body-timeout is cut
// (by 1.5 times it): twice that and a minute (for the fsync at the end)
// leaves alone the uploads of another serve on the same DIR (an overlapping
// restart). Without a body timeout, a day.
func staleAge(bodyTimeout time.Duration) time.Duration {
	if bodyTimeout <= 0 {
		return 24 * time.Hour
	}
	return 2*bodyTimeout + time.Minute
}

// removeStaleUploads removes the temporary files of uploads that a serve
// killed before it could remove them (SIGKILL, a crash) left in DIR: the
// regular files named tempPrefix and 16 hex digits, last modified before
// before (staleAge ago). It walks DIR through root, never through a
// symbolic link, at most staleMaxDepth directories deep and staleMaxEntries
// entries, and logs what it removed. The uploads in progress of another
// serve on the same DIR are modified more recently, and stay.
func removeStaleUploads(root *os.Root, before time.Time, log *slog.Logger) {
	removed, entries := 0, 0
	err := fs.WalkDir(root.FS(), ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // unreadable: skip it
		}
		if entries++; entries > staleMaxEntries {
			return errWalkBound
		}
		if d.IsDir() {
			if strings.Count(name, "/") >= staleMaxDepth {
				return fs.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() || !isTempName(path.Base(name)) {
			return nil
		}
		fi, err := root.Lstat(name)
		if err != nil || !fi.Mode().IsRegular() || !fi.ModTime().Before(before) {
			return nil
		}
		if err := root.Remove(name); err != nil {
			log.Warn("removing a stale upload", "file", name, "err", err)
			return nil
		}
		removed++
		return nil
	})
	switch {
	case errors.Is(err, errWalkBound):
		log.Warn("stale uploads: stopped looking", "entries", staleMaxEntries, "removed", removed)
	case err != nil:
		log.Warn("stale uploads", "err", err, "removed", removed)
	case removed > 0:
		log.Info("removed stale uploads", "files", removed)
	}
}

// isTempName reports whether name is one that prepare gives temporary files.
func isTempName(name string) bool {
	hex, ok := strings.CutPrefix(name, tempPrefix)
	return ok && len(hex) == 16 && strings.Trim(hex, "0123456789abcdef") == ""
}
