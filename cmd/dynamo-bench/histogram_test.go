package main

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// exactQuantile is the definition Histogram.Quantile approximates: the
// smallest sample with at least ceil(q*n) samples at or below it.
func exactQuantile(sorted []time.Duration, q float64) time.Duration {
	rank := max(int(math.Ceil(q*float64(len(sorted)))), 1)
	return sorted[rank-1]
}

func TestHistogramQuantilesMatchSortedSamples(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	var h Histogram
	var samples []time.Duration
	// A latency-like mix: most around a millisecond, a long tail to seconds.
	for range 200_000 {
		d := time.Duration(rng.ExpFloat64() * float64(800*time.Microsecond))
		if rng.IntN(1000) == 0 {
			d += time.Duration(rng.Int64N(int64(2 * time.Second)))
		}
		samples = append(samples, d)
		h.Record(d)
	}
	slices.Sort(samples)
	for _, q := range []float64{0.01, 0.5, 0.9, 0.99, 0.999, 0.9999} {
		got, want := h.Quantile(q), exactQuantile(samples, q)
		if rel := math.Abs(float64(got-want)) / float64(want); rel > 0.001 {
			t.Errorf("Quantile(%v) = %v, sorted samples say %v: off by %.3f%%, want at most 0.1%%", q, got, want, 100*rel)
		}
	}
	if h.Max() != samples[len(samples)-1] {
		t.Errorf("Max = %v, want %v exactly", h.Max(), samples[len(samples)-1])
	}
	if h.Quantile(1) != h.Max() {
		t.Errorf("Quantile(1) = %v, want Max %v", h.Quantile(1), h.Max())
	}
	if h.Count() != uint64(len(samples)) {
		t.Errorf("Count = %d, want %d", h.Count(), len(samples))
	}
}

func TestHistogramSmallValuesAreExact(t *testing.T) {
	var h Histogram
	for v := range 1000 {
		h.Record(time.Duration(v)) // 0..999 ns: below the first bucket boundary
	}
	if got := h.Quantile(0.5); got != 499 {
		t.Errorf("p50 of 0..999 = %v, want 499ns", got)
	}
	if got := h.Quantile(0.999); got != 998 {
		t.Errorf("p99.9 of 0..999 = %v, want 998ns", got)
	}
}

func TestHistogramMergeEqualsRecordingEverything(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var all, a, b Histogram
	for i := range 50_000 {
		d := time.Duration(rng.Int64N(int64(50 * time.Millisecond)))
		all.Record(d)
		if i%3 == 0 {
			a.Record(d)
		} else {
			b.Record(d)
		}
	}
	var merged Histogram
	merged.Merge(&a)
	merged.Merge(&b)
	merged.Merge(&Histogram{}) // an empty one changes nothing
	for _, q := range []float64{0.5, 0.99, 0.999, 1} {
		if merged.Quantile(q) != all.Quantile(q) {
			t.Errorf("Quantile(%v): merged %v, recorded together %v", q, merged.Quantile(q), all.Quantile(q))
		}
	}
	if merged.Count() != all.Count() || merged.Mean() != all.Mean() {
		t.Errorf("merged count/mean %d/%v, want %d/%v", merged.Count(), merged.Mean(), all.Count(), all.Mean())
	}
}

func TestHistogramEmpty(t *testing.T) {
	var h Histogram
	if h.Quantile(0.99) != 0 || h.Max() != 0 || h.Mean() != 0 || h.Count() != 0 {
		t.Errorf("empty histogram: p99 %v max %v mean %v count %d, want zeros", h.Quantile(0.99), h.Max(), h.Mean(), h.Count())
	}
}

// Every value falls in the bucket whose range holds it, and buckets tile
// the values without gaps.
func TestBucketRangesTile(t *testing.T) {
	prevHi := int64(-1)
	for i := range 40 * subBucketHalf {
		lo, hi := bucketRange(i)
		if lo != prevHi+1 {
			t.Fatalf("bucket %d starts at %d, previous ended at %d", i, lo, prevHi)
		}
		if bucketOf(lo) != i || bucketOf(hi) != i {
			t.Fatalf("bucket %d = [%d, %d], but bucketOf gives %d and %d", i, lo, hi, bucketOf(lo), bucketOf(hi))
		}
		if lo >= subBucketCount && float64(hi-lo+1)/float64(lo) > 1.0/subBucketHalf {
			t.Fatalf("bucket %d = [%d, %d] is wider than 1/%d of its values", i, lo, hi, subBucketHalf)
		}
		prevHi = hi
	}
}
