package main

import (
	"math"
	"math/bits"
	"time"
)

// subBucketBits sets the histogram's precision: values below 2^subBucketBits
// nanoseconds are counted exactly, and every larger value lands in a bucket
// no wider than 1/2^(subBucketBits-1) of it, so a percentile is off by at
// most 0.05% (half a bucket) — three significant digits, as HdrHistogram's
// usual setting.
const (
	subBucketBits  = 11
	subBucketCount = 1 << subBucketBits
	subBucketHalf  = subBucketCount / 2
)

// Histogram counts latencies in log-linear buckets, like HdrHistogram: memory
// grows with the logarithm of the largest value, not with the sample count,
// and percentiles keep three significant digits however far out the tail is.
// The zero value is empty and ready to use. A Histogram is not safe for
// concurrent use: each client records into its own, and they are merged at
// the end.
type Histogram struct {
	counts []uint64 // by bucket index; grown on demand
	total  uint64
	sum    float64 // nanoseconds, for the mean
	min    int64
	max    int64
}

// bucketOf returns the bucket index of v nanoseconds (v >= 0).
func bucketOf(v int64) int {
	if v < subBucketCount {
		return int(v)
	}
	shift := bits.Len64(uint64(v)) - subBucketBits
	return shift*subBucketHalf + int(v>>shift)
}

// bucketRange returns the smallest and largest value counted in bucket i.
func bucketRange(i int) (lo, hi int64) {
	if i < subBucketCount {
		return int64(i), int64(i)
	}
	shift := i/subBucketHalf - 1
	sub := int64(i - shift*subBucketHalf)
	return sub << shift, (sub+1)<<shift - 1
}

// Record counts one latency; a negative one counts as zero.
func (h *Histogram) Record(d time.Duration) {
	v := max(int64(d), 0)
	i := bucketOf(v)
	if i >= len(h.counts) {
		grown := make([]uint64, i+1+i/4)
		copy(grown, h.counts)
		h.counts = grown
	}
	h.counts[i]++
	if h.total == 0 || v < h.min {
		h.min = v
	}
	h.max = max(h.max, v)
	h.total++
	h.sum += float64(v)
}

// Merge adds every count of o to h.
func (h *Histogram) Merge(o *Histogram) {
	if o.total == 0 {
		return
	}
	if len(o.counts) > len(h.counts) {
		grown := make([]uint64, len(o.counts))
		copy(grown, h.counts)
		h.counts = grown
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.total == 0 || o.min < h.min {
		h.min = o.min
	}
	h.max = max(h.max, o.max)
	h.total += o.total
	h.sum += o.sum
}

// Count is the number of values recorded.
func (h *Histogram) Count() uint64 { return h.total }

// Max is the largest value recorded, exactly.
func (h *Histogram) Max() time.Duration { return time.Duration(h.max) }

// Mean is the average of the values recorded.
func (h *Histogram) Mean() time.Duration {
	if h.total == 0 {
		return 0
	}
	return time.Duration(h.sum / float64(h.total))
}

// Quantile returns the value at quantile q (0 < q <= 1): the smallest
// recorded value v such that at least ceil(q*count) values are <= v, to
// within half a bucket. Quantile(1) is Max exactly.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.total == 0 {
		return 0
	}
	if q >= 1 {
		return time.Duration(h.max)
	}
	rank := uint64(math.Ceil(q * float64(h.total)))
	rank = max(rank, 1)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			lo, hi := bucketRange(i)
			mid := lo + (hi-lo)/2
			return time.Duration(min(max(mid, h.min), h.max))
		}
	}
	return time.Duration(h.max)
}
