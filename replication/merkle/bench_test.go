package merkle

import (
	"fmt"
	"runtime"
	"testing"
)

func BenchmarkSet(b *testing.B) {
	tr := New(LeafBitsFor(1_000_000))
	keys := make([][]byte, 1<<16)
	for i := range keys {
		keys[i] = key(1_000_000 + i)
	}
	d0, d1 := digest(0, 0), digest(0, 1)
	for i := 0; b.Loop(); i++ {
		tr.Set(keys[i&(len(keys)-1)], d0, d1)
	}
}

func BenchmarkSetParallel(b *testing.B) {
	tr := New(LeafBitsFor(1_000_000))
	d0, d1 := digest(0, 0), digest(0, 1)
	b.RunParallel(func(pb *testing.PB) {
		k := key(1_000_000)
		for pb.Next() {
			tr.Set(k, d0, d1)
		}
	})
}

// BenchmarkLoad1M is the start-up path: one tree from a million keys already
// in memory, so it measures the tree, not storage.
func BenchmarkLoad1M(b *testing.B) {
	const n = 1_000_000
	keys, digests := make([][]byte, n), make([]Digest, n)
	for i := range n {
		keys[i], digests[i] = key(i), digest(i, 0)
	}
	seq := func(yield func([]byte, Digest) bool) {
		for i := range keys {
			if !yield(keys[i], digests[i]) {
				return
			}
		}
	}
	for b.Loop() {
		New(LeafBitsFor(n)).Load(seq)
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "keys/s")
}

// BenchmarkTreeMemory reports the heap one loaded tree keeps, for the
// recommended shape of each partition size.
func BenchmarkTreeMemory(b *testing.B) {
	for _, n := range []int{1_000, 100_000, 1_000_000} {
		bits := LeafBitsFor(n)
		b.Run(fmt.Sprintf("keys=%d/leaves=%d", n, 1<<bits), func(b *testing.B) {
			var grown int64
			for b.Loop() {
				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				tr := New(bits)
				tr.Load(partition(n))
				runtime.GC()
				runtime.ReadMemStats(&after)
				runtime.KeepAlive(tr)
				grown = int64(after.HeapAlloc) - int64(before.HeapAlloc)
			}
			b.ReportMetric(float64(grown), "bytes/tree")
			b.ReportMetric(float64(grown)/float64(n), "bytes/key")
		})
	}
}

// BenchmarkExchange finds ten differences between replicas of partitions of
// several sizes, with the recommended shape and its neighbours, and reports
// what crosses the wire: the hash messages, and both sides listing the keys
// of the differing buckets at entryBytes a key.
func BenchmarkExchange(b *testing.B) {
	for _, n := range []int{1_000, 100_000, 1_000_000} {
		rec := LeafBitsFor(n)
		for _, bits := range []int{rec - 4, rec - 2, rec, rec + 2} {
			b.Run(fmt.Sprintf("keys=%d/bits=%d", n, bits), func(b *testing.B) {
				x, y := loaded(b, bits, n), loaded(b, bits, n)
				_, gone := diverge(y, n)
				var diff Diff
				var wire [][]byte
				for b.Loop() {
					diff, wire = exchange(b, x, y)
				}
				hashBytes, listBytes := wireBytes(wire), listingBytes(diff, n, gone)
				b.ReportMetric(float64(hashBytes), "hash-bytes")
				b.ReportMetric(float64(listBytes), "list-bytes")
				b.ReportMetric(100*float64(hashBytes+listBytes)/float64(n*entryBytes), "%data")
				b.ReportMetric(float64(int64(16)<<bits), "tree-bytes")
			})
		}
	}
}
