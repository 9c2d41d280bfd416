// Package merkle keeps the hash tree of one partition on one replica, so that
// anti-entropy can find the keys two replicas disagree on while sending a few
// kilobytes rather than the partition (Dynamo §4.7). It is a pure leaf: it
// knows nothing of storage, versions or the network.
//
// # Shape
//
// A tree has 2^LeafBits leaves, fixed when it is made. A key lives in the
// leaf named by the top LeafBits bits of a 64-bit hash of the key (FNV-1a,
// finalised with MurmurHash3's fmix64). That is deliberately not the ring's
// hash: all keys of a partition share the top bits of that one. A leaf holds
// the XOR of an entry per key, a 64-bit mix of the key hash with the digest
// of the key's stored object (version.Object.Digest); every other node holds
// the XOR of its two children.
//
// The tree keeps nothing per key, so its memory does not depend on how many
// keys it covers: 16 bytes per leaf (the leaves and the interior nodes, 8
// bytes each) plus about 80 bytes. That is 16 KiB for 2^10 leaves, 256 KiB for
// 2^14, 1 MiB for 2^16. At the shapes LeafBitsFor recommends that comes to
// about 16 bytes per key at 1,000 keys, 2.6 at 100,000 and 1 at 1,000,000; a
// node holding 256 partitions of 100,000 keys spends 64 MiB on trees.
//
// # What always holds
//
//   - Every interior node is the XOR of its children, so every node is the
//     XOR of the entries of the keys below it.
//   - A tree is a function of its set of (key, digest) pairs. XOR is
//     commutative and its own inverse, so the order in which transitions are
//     reported, even two of one key, and whether keys came through Set or
//     Load, make no difference.
//   - Node i at depth d covers exactly the keys whose hash begins with the d
//     bits of i, whatever the tree's LeafBits. Trees of different shapes
//     therefore agree on every depth they share, and two replicas that chose
//     different shapes still compare, at the shallower one.
//   - Equal sets give equal nodes. Different sets give different nodes but for
//     a 2^-64 chance per node.
//
// # Keeping it current
//
// Because nothing is kept per key, the tree cannot look up what a key held
// before a write. So the caller reports every transition it commits, with
// Set(key, prev, digest), where the zero Digest means "no object". Each
// transition must be reported exactly once, after it is durable, with the
// digest it really replaced; concurrent writers may report in any order.
// Tombstones are objects and have digests; Delete is for a key gone entirely.
// If a transition is lost (a crash between commit and report, a bug), the
// tree stays wrong until it is rebuilt. Exchanges then keep listing the
// affected leaf and finding nothing to repair, which is the sign to rebuild.
//
// At start-up the caller makes a tree with New and fills it with Load from one
// consistent snapshot of the partition. It then reports exactly the
// transitions committed after that snapshot; those may arrive while Load
// runs. Load folds about 30 million keys a second into a tree, so storage
// sets the pace of a rebuild.
//
// # Exchange
//
// An exchange is a conversation of Messages between two trees, with no state
// kept between messages. The opener sends Start, the root hash alone. After
// that, each side answers the other's message with Reply, which compares the
// hashes it received with its own and either descends or ends:
//
//  1. opener → root. Equal roots end the exchange after this one comparison.
//  2. reply  → the 2^ceil(L/2) hashes at depth ceil(L/2), where L is the
//     shallower leaf depth of the two trees.
//  3. reply  → the hashes of the 2^floor(L/2) leaves under each node that
//     differed.
//  4. reply  → Done: the differing leaves, as a Diff.
//
// That is two round trips when the trees differ and one when they do not. The
// nodes of a message travel as runs (all the children of one node are one
// run), so a message is almost entirely its 8-byte hashes. The opener ends
// with the Diff. To find the keys that differ, it asks the peer for the (key,
// digest) pairs the peer holds in those buckets (the Done message encodes the
// Diff), lists its own with Diff.Contains, and compares. Both of those scans
// are the caller's.
//
// # Choosing LeafBits
//
// Finding d differing keys among n costs about 2^(L/2)·8·(d+1) bytes of
// hashes, plus n·d/2^L keys listed on each side. Measured with ten differing
// keys and 100 bytes per key (BenchmarkExchange):
//
//	keys       leaves  hashes   listings  of the data  tree
//	1,000      2^10    2.4 KB   3.0 KB    5.4%         16 KiB
//	100,000    2^14    11.4 KB  14.2 KB   0.26%        256 KiB
//	1,000,000  2^16    22.6 KB  33.0 KB   0.056%       1 MiB
//
// LeafBitsFor recommends about 8 keys per leaf, within [2^10, 2^16] leaves,
// which is near the cheapest exchange at each size. Above 2^16, leaves add
// memory and save no bytes. At 1,000 keys, ten differences are 1% of the keys
// and no shape can make their exchange cost under 1% of the data. Two
// replicas may choose different shapes (see above). A tree that has outgrown
// its shape, with Len far above 8 per leaf, is best rebuilt at the next
// start-up.
//
// # Concurrency
//
// A Tree is safe for concurrent use. One RWMutex guards the nodes. Set and
// Delete hash outside it and hold it for the LeafBits+1 XORs of one
// leaf-to-root path, about 70ns a call. Load folds keys into a private array
// and holds it only to merge that array in, one pass over the tree. Root,
// Level and Reply hold the read lock, so each Reply compares against one
// state of the tree. Between messages the tree moves on: a write that lands
// during an exchange can show up as a difference or be missed until the next
// exchange.
//
// # Caveats
//
// The key hash, the entry mix and the encoding are part of the protocol:
// changing any of them makes every leaf differ between old and new nodes, so
// each needs a new message format byte. The hashes are not cryptographic.
// A client able to choose keys can crowd one leaf, which only makes
// exchanges that touch that leaf list more keys.
package merkle
