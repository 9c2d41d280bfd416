package ring

import "slices"

// assignment is the state of the incremental claim while New replays the
// joins. Replaying them, rather than solving for the best assignment of the
// final list, is what makes an appended member take partitions only for
// itself: the first k members are assigned exactly as if they were all.
type assignment struct {
	owners []int32 // owners[p] indexes the member list
	counts []int   // partitions owned, per member
	window int     // n-1: the owners of p..p+window should be distinct
	// crowd[p] counts the other partitions of owners[p] within window
	// positions of p, and near[p] those of the joining member. Both are kept
	// up to date on every move because rescanning the neighbourhood of every
	// candidate for every steal would cost another factor of the window.
	crowd, near []int
	tie         []uint64 // per partition, for the joining member
}

// assign returns the owner of every partition: the first member owns all of
// them, then each later member claims its share in join order.
func assign(partitions int, members []string, n int) []int32 {
	a := newAssignment(partitions, len(members), n)
	for m := 1; m < len(members); m++ {
		a.join(int32(m), members[m])
	}
	return a.owners
}

// newAssignment starts the replay for the given number of members, with
// member 0 owning every partition.
func newAssignment(partitions, members, n int) *assignment {
	a := &assignment{
		owners: make([]int32, partitions),
		counts: make([]int, members),
		// Past half the ring every partition is near; clamping keeps
		// around's arithmetic from overflowing on an absurd n.
		window: min(n-1, partitions),
		crowd:  make([]int, partitions),
		near:   make([]int, partitions),
		tie:    make([]uint64, partitions),
	}
	a.counts[0] = partitions
	for p := range a.crowd {
		a.around(p, func(int) { a.crowd[p]++ })
	}
	return a
}

// join adds member m, with the given id, after members 0..m-1, giving it
// floor(P/k) partitions, k = m+1, each taken from a member that currently owns
// the most. Before the join the others own floor(P/(k-1)) or ceil(P/(k-1)), and
// shaving the top keeps them within one of each other, so afterwards every
// member owns floor(P/k) or ceil(P/k).
//
// Among the most loaded members' partitions, join prefers, in order:
//  1. the fewest of m's partitions within window positions (near), so the
//     n owners that start a preference list stay distinct;
//  2. the most partitions of the donor within window positions (crowd).
//     Rings with fewer than n members cannot avoid such clumps and later
//     members can only repair them by taking them; without this rule clumps
//     linger for dozens of joins and skew replica load by up to 15%;
//  3. the lowest tie, a hash of (id, partition): arbitrary but deterministic,
//     and different per member so that members do not all pick alike.
func (a *assignment) join(m int32, id string) {
	salt := Hash([]byte(id))
	for p := range a.tie {
		a.tie[p] = mix(salt, p)
	}
	clear(a.near)
	near, crowd, tie := a.near, a.crowd, a.tie
	for a.counts[m] < len(a.owners)/int(m+1) {
		top := slices.Max(a.counts[:m])
		best := -1
		for p, o := range a.owners {
			if o == m || a.counts[o] < top {
				continue
			}
			if best < 0 || near[p] < near[best] || near[p] == near[best] &&
				(crowd[p] > crowd[best] || crowd[p] == crowd[best] && tie[p] < tie[best]) {
				best = p
			}
		}
		a.move(best, m)
	}
}

// move hands partition p to the joining member m.
func (a *assignment) move(p int, m int32) {
	o := a.owners[p]
	a.around(p, func(q int) {
		switch a.owners[q] {
		case o:
			a.crowd[q]--
		case m:
			a.crowd[q]++
		}
		a.near[q]++
	})
	a.crowd[p] = a.near[p]
	a.owners[p] = m
	a.counts[o]--
	a.counts[m]++
}

// around calls f once for every partition within window positions of p,
// either side, p excluded. On a ring no wider than the window span that is
// every other partition.
func (a *assignment) around(p int, f func(q int)) {
	P := len(a.owners)
	if 2*a.window+1 >= P {
		for d := 1; d < P; d++ {
			f((p + d) % P)
		}
		return
	}
	for d := 1; d <= a.window; d++ {
		f((p + d) % P)
		f((p - d + P) % P)
	}
}

// mix is the splitmix64 finaliser over salt and p: cheap, well spread and
// identical on every platform.
func mix(salt uint64, p int) uint64 {
	x := salt ^ uint64(p)*0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}
