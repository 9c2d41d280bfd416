package store

import "errors"

// These are the only errors callers need to distinguish. Others wrap the
// underlying bbolt or OS error with the operation that failed.
var (
	// ErrClosed is returned by every method called after Close.
	ErrClosed = errors.New("store: closed")

	// ErrLocked is returned by Open when another process (or another DB in
	// this process) holds the data dir's file lock.
	ErrLocked = errors.New("store: data dir locked")

	// ErrNoChange is returned by an Update function to leave the key as it
	// is. Update then writes nothing and returns the current value.
	ErrNoChange = errors.New("store: no change")

	// ErrEmptyKey is returned for a zero-length key, meta name or hint target.
	ErrEmptyKey = errors.New("store: empty key")

	// ErrKeyTooLarge is returned for a key or meta name over MaxKeySize, or
	// a hint target over MaxTargetSize.
	ErrKeyTooLarge = errors.New("store: key too large")
)
