package main

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
)

// workload is a YCSB-style operation mix: the share of operations that
// read a key; the rest update one.
type workload struct {
	name     string
	readFrac float64
}

// workloads are YCSB's core mixes A, B and C, plus W for writes only.
var workloads = []workload{
	{name: "A", readFrac: 0.50}, // update heavy: session store recording recent actions
	{name: "B", readFrac: 0.95}, // read mostly: photo tagging
	{name: "C", readFrac: 1.00}, // read only: user profile cache
	{name: "W", readFrac: 0.00}, // write only: ingest
}

func workloadByName(name string) (workload, error) {
	for _, w := range workloads {
		if strings.EqualFold(w.name, name) {
			return w, nil
		}
	}
	return workload{}, fmt.Errorf("--workload must be A (50%% reads, 50%% updates), B (95/5), C (reads only) or W (updates only), got %q", name)
}

// opKind is what one operation of the mix does.
type opKind int

const (
	opRead opKind = iota
	opUpdate
)

// next draws the kind of the next operation.
func (w workload) next(rng *rand.Rand) opKind {
	// Draw even for C and W so a seed gives the same key sequence whatever the mix.
	if rng.Float64() < w.readFrac {
		return opRead
	}
	return opUpdate
}

// keyChooser picks the index, in [0, keys), of the key the next operation
// touches. Implementations are immutable and safe for concurrent use; the
// randomness comes from the caller's rng.
type keyChooser interface {
	next(rng *rand.Rand) int
}

// uniformKeys picks every key with the same probability.
type uniformKeys struct{ n int }

func (u uniformKeys) next(rng *rand.Rand) int { return rng.IntN(u.n) }

// zipfianTheta is YCSB's default skew (its ZipfianGenerator.ZIPFIAN_CONSTANT):
// the key of popularity rank i is chosen with probability proportional to
// 1/(i+1)^0.99.
const zipfianTheta = 0.99

// zipfian draws popularity ranks in [0, n) with Gray et al.'s method
// ("Quickly generating billion-record synthetic databases", SIGMOD 1994),
// the one YCSB uses: O(n) set-up to compute zeta(n), O(1) per draw. Ranks 0
// and 1 have their exact probabilities; the rest follow the power law
// approximately.
type zipfian struct {
	n     int
	theta float64
	zetaN float64
	alpha float64
	eta   float64
	half  float64 // 1 + 0.5^theta: below it (scaled by zetaN) the draw is rank 1
}

func newZipfian(n int, theta float64) *zipfian {
	zetaN := zeta(n, theta)
	return &zipfian{
		n:     n,
		theta: theta,
		zetaN: zetaN,
		alpha: 1 / (1 - theta),
		eta:   (1 - math.Pow(2/float64(n), 1-theta)) / (1 - zeta(2, theta)/zetaN),
		half:  1 + math.Pow(0.5, theta),
	}
}

// zeta is sum over i in [1, n] of 1/i^theta.
func zeta(n int, theta float64) float64 {
	var sum float64
	for i := 1; i <= n; i++ {
		sum += 1 / math.Pow(float64(i), theta)
	}
	return sum
}

// rank draws one popularity rank.
func (z *zipfian) rank(rng *rand.Rand) int {
	u := rng.Float64()
	uz := u * z.zetaN
	if uz < 1 {
		return 0
	}
	if uz < z.half {
		return 1
	}
	r := int(float64(z.n) * math.Pow(z.eta*u-z.eta+1, z.alpha))
	return min(r, z.n-1)
}

// probability is the exact probability of rank i under the power law that
// rank approximates.
func (z *zipfian) probability(i int) float64 {
	return 1 / math.Pow(float64(i+1), z.theta) / z.zetaN
}

// zipfianKeys maps zipfian ranks to keys through a fixed random permutation
// (YCSB's "scrambled zipfian"), so the hot keys are spread over the key
// space, and so over the ring's partitions, instead of being keys 0, 1, 2...
type zipfianKeys struct {
	z    *zipfian
	perm []int32 // perm[rank] is the key index
}

func newZipfianKeys(n int, seed uint64) zipfianKeys {
	perm := make([]int32, n)
	for i := range perm {
		perm[i] = int32(i)
	}
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	rng.Shuffle(n, func(i, j int) { perm[i], perm[j] = perm[j], perm[i] })
	return zipfianKeys{z: newZipfian(n, zipfianTheta), perm: perm}
}

func (k zipfianKeys) next(rng *rand.Rand) int { return int(k.perm[k.z.rank(rng)]) }

// keyName is the key of index i: a fixed prefix and a zero-padded decimal,
// as YCSB's "user..." keys, so every key has the same length.
func keyName(prefix string, i int) string {
	const width = 10
	b := make([]byte, 0, len(prefix)+width)
	b = append(b, prefix...)
	digits := strconv.AppendInt(make([]byte, 0, width), int64(i), 10)
	for range width - len(digits) {
		b = append(b, '0')
	}
	return string(append(b, digits...))
}
