package main

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestWorkloadMixRatios(t *testing.T) {
	const draws = 200_000
	for _, w := range workloads {
		rng := rand.New(rand.NewPCG(3, 4))
		reads := 0
		for range draws {
			if w.next(rng) == opRead {
				reads++
			}
		}
		got := float64(reads) / draws
		if math.Abs(got-w.readFrac) > 0.005 {
			t.Errorf("workload %s: %.4f of operations are reads, want %.2f", w.name, got, w.readFrac)
		}
	}
}

func TestWorkloadByName(t *testing.T) {
	for name, want := range map[string]float64{"A": 0.5, "b": 0.95, "C": 1, "w": 0} {
		w, err := workloadByName(name)
		if err != nil || w.readFrac != want {
			t.Errorf("workloadByName(%q) = %+v, %v; want read fraction %v", name, w, err, want)
		}
	}
	if _, err := workloadByName("F"); err == nil {
		t.Error("workloadByName(F) succeeded; want an error naming A, B, C and W")
	}
}

// Ranks 0 and 1 have exact probabilities in Gray et al.'s method; deeper
// ranks follow the power law within the method's known approximation
// (about 18% high at rank 2, closer further out), and the mass of the head
// and of the tail match it to within a few percent.
func TestZipfianFollowsThePowerLaw(t *testing.T) {
	const draws = 1_000_000
	for _, n := range []int{100, 10_000} {
		z := newZipfian(n, zipfianTheta)
		rng := rand.New(rand.NewPCG(5, 6))
		counts := make([]float64, n)
		for range draws {
			r := z.rank(rng)
			if r < 0 || r >= n {
				t.Fatalf("n=%d: rank %d out of range", n, r)
			}
			counts[r]++
		}
		freq := func(i int) float64 { return counts[i] / draws }
		for _, i := range []int{0, 1} {
			if ratio := freq(i) / z.probability(i); math.Abs(ratio-1) > 0.03 {
				t.Errorf("n=%d rank %d: frequency %.5f, want %.5f (ratio %.3f)", n, i, freq(i), z.probability(i), ratio)
			}
		}
		for _, i := range []int{2, 3, 5, 10, 50} {
			if ratio := freq(i) / z.probability(i); math.Abs(ratio-1) > 0.25 {
				t.Errorf("n=%d rank %d: frequency %.5f, want about %.5f (ratio %.3f)", n, i, freq(i), z.probability(i), ratio)
			}
		}
		var head, wantHead, tail, wantTail float64
		for i := range n {
			if i < n/10 {
				head += freq(i)
				wantHead += z.probability(i)
			}
			if i >= n/2 {
				tail += freq(i)
				wantTail += z.probability(i)
			}
		}
		if math.Abs(head-wantHead) > 0.03 || math.Abs(tail-wantTail) > 0.015 {
			t.Errorf("n=%d: top 10%% of ranks drew %.3f (want %.3f), bottom half %.3f (want %.3f)", n, head, wantHead, tail, wantTail)
		}
		if freq(0) < freq(1) || freq(1) < freq(10) || freq(10) < freq(n-1) {
			t.Errorf("n=%d: frequencies not falling with rank: %v %v %v %v", n, freq(0), freq(1), freq(10), freq(n-1))
		}
	}
}

// Scrambling maps ranks to keys one to one: every key can be drawn, and the
// hottest key is not simply key 0.
func TestZipfianKeysArePermuted(t *testing.T) {
	const n = 1000
	k := newZipfianKeys(n, 1)
	perm := slices.Clone(k.perm)
	slices.Sort(perm)
	for i, v := range perm {
		if int(v) != i {
			t.Fatalf("perm is not a permutation of 0..%d: sorted[%d] = %d", n-1, i, v)
		}
	}
	rng := rand.New(rand.NewPCG(1, 1))
	counts := make([]int, n)
	for range 200_000 {
		counts[k.next(rng)]++
	}
	hottest := slices.Index(counts, slices.Max(counts))
	if hottest != int(k.perm[0]) {
		t.Errorf("hottest key %d, want perm[0] = %d", hottest, k.perm[0])
	}
	if hottest == 0 && k.perm[0] != 0 {
		t.Errorf("hottest key is key 0: ranks not scrambled")
	}
}

func TestUniformKeysCoverEveryKeyEvenly(t *testing.T) {
	const n, draws = 100, 1_000_000
	u := uniformKeys{n: n}
	rng := rand.New(rand.NewPCG(9, 9))
	counts := make([]int, n)
	for range draws {
		counts[u.next(rng)]++
	}
	want := float64(draws) / n
	for i, c := range counts {
		if math.Abs(float64(c)-want)/want > 0.05 {
			t.Errorf("key %d drawn %d times, want about %.0f", i, c, want)
		}
	}
}

func TestKeyName(t *testing.T) {
	if got := keyName("bench-", 42); got != "bench-0000000042" {
		t.Errorf("keyName = %q", got)
	}
}
