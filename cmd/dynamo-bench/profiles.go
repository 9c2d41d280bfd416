package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// profileTarget is a node whose Go profiles are collected: dynamo serves
// them under /debug/pprof/ on its peer port, never on the client port.
type profileTarget struct {
	id   string
	peer string // base URL of the peer port
}

// profileCollector gathers, for every target, a CPU profile over the
// measured window and a goroutine dump from its middle, into dir as
// <id>.cpu.pprof and <id>.goroutines.txt.
type profileCollector struct {
	dir     string
	targets []profileTarget
	client  *http.Client

	wg   sync.WaitGroup
	mu   sync.Mutex // guards errs
	errs []error
}

func newProfileCollector(dir string, targets []profileTarget, window time.Duration) (*profileCollector, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	return &profileCollector{
		dir:     dir,
		targets: targets,
		client:  &http.Client{Timeout: window + time.Minute},
	}, nil
}

// start begins the profiles of a window of length d; wait returns once
// every file is written.
func (p *profileCollector) start(ctx context.Context, d time.Duration) {
	seconds := int(math.Ceil(d.Seconds()))
	for _, t := range p.targets {
		p.wg.Add(2)
		go func() {
			defer p.wg.Done()
			p.save(ctx, fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", t.peer, seconds), t.id+".cpu.pprof")
		}()
		go func() {
			defer p.wg.Done()
			timer := time.NewTimer(d / 2)
			defer timer.Stop()
			select {
			case <-ctx.Done():
				return
			case <-timer.C:
			}
			p.save(ctx, t.peer+"/debug/pprof/goroutine?debug=1", t.id+".goroutines.txt")
		}()
	}
}

func (p *profileCollector) save(ctx context.Context, url, name string) {
	err := func() error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := p.client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d (does this dynamo serve /debug/pprof/ on its peer port?)", resp.StatusCode)
		}
		f, err := os.Create(filepath.Join(p.dir, name))
		if err != nil {
			return err
		}
		if _, err := io.Copy(f, resp.Body); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	}()
	if err != nil {
		p.mu.Lock()
		p.errs = append(p.errs, fmt.Errorf("GET %s: %w", url, err))
		p.mu.Unlock()
	}
}

func (p *profileCollector) wait() error {
	p.wg.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	return errors.Join(p.errs...)
}
