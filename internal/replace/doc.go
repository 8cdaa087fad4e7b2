// Package replace holds the discipline of a file replaced whole: a
// temporary file in the target's directory, fsync(2) before the rename over
// the target, fsync(2) of the directory after it, or removal on abort.
package replace
