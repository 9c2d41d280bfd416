package store

import (
	"fmt"
	"sync"

	bolt "go.etcd.io/bbolt"
)

// groupCommit shares write transactions, and their fsync, between
// concurrent writers. The first writer to arrive commits at once, alone;
// writers that arrive while a commit runs queue up, and the next commit
// takes every one of them. So a lone writer waits for one fsync and no
// timer, and under load each commit carries everything that arrived during
// the previous one: the batch grows with the load. (bbolt's own Batch waits
// a fixed delay for company, and batches formed while a commit runs queue
// one behind another instead of merging.)
type groupCommit struct {
	mu       sync.Mutex // guards queue and running
	queue    []commitCall
	running  bool
	maxBatch int // at most this many calls per transaction; 0: no bound
}

type commitCall struct {
	fn   func(*bolt.Tx) error
	done chan error
}

// do runs fn in a write transaction shared with other callers and returns
// once that transaction committed (and fsynced). fn may run more than
// once, as with bolt.DB.Batch: when a call in the transaction fails or
// panics, the transaction is rolled back, the failing call is run again
// alone (its error is its result; a panic there is raised in the caller's
// goroutine) and the others are retried together.
func (g *groupCommit) do(db *bolt.DB, fn func(*bolt.Tx) error) error {
	call := commitCall{fn: fn, done: make(chan error, 1)}
	g.mu.Lock()
	g.queue = append(g.queue, call)
	if !g.running {
		g.running = true
		go g.commitLoop(db)
	}
	g.mu.Unlock()
	err := <-call.done
	if p, ok := err.(panicked); ok {
		panic(p.reason)
	}
	return err
}

// panicked carries a call's panic back to its caller.
type panicked struct{ reason any }

func (p panicked) Error() string { return fmt.Sprintf("store: write panicked: %v", p.reason) }

// run runs one call's function, turning a panic into a panicked error.
func (c commitCall) run(tx *bolt.Tx) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = panicked{r}
		}
	}()
	return c.fn(tx)
}

// commitLoop commits what is queued, again and again, until the queue is
// empty.
func (g *groupCommit) commitLoop(db *bolt.DB) {
	for {
		g.mu.Lock()
		calls := g.queue
		if g.maxBatch > 0 && len(calls) > g.maxBatch {
			calls = calls[:g.maxBatch:g.maxBatch]
		}
		g.queue = g.queue[len(calls):]
		if len(calls) == 0 {
			g.running = false
			g.queue = nil
			g.mu.Unlock()
			return
		}
		g.mu.Unlock()
		commitCalls(db, calls)
	}
}

// commitCalls runs calls in one transaction and reports its outcome to
// each; a failing call is split off as bbolt's Batch does.
func commitCalls(db *bolt.DB, calls []commitCall) {
	for len(calls) > 0 {
		failed := -1
		err := db.Update(func(tx *bolt.Tx) error {
			for i, c := range calls {
				if err := c.run(tx); err != nil {
					failed = i
					return err
				}
			}
			return nil
		})
		if failed < 0 {
			for _, c := range calls {
				c.done <- err
			}
			return
		}
		bad := calls[failed]
		bad.done <- db.Update(bad.run)
		calls = append(calls[:failed:failed], calls[failed+1:]...)
	}
}
