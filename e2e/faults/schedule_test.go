package faults_test

import (
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/dynamo-kv/dynamo/e2e/faults"
)

func scheduleConfig(seed uint64, maxAffected int) faults.ScheduleConfig {
	return faults.ScheduleConfig{
		Seed: seed, Period: 10 * time.Minute, Kinds: faults.AllKinds,
		MinGap: 20 * time.Millisecond, MaxGap: 300 * time.Millisecond,
		MinDuration: 100 * time.Millisecond, MaxDuration: 3 * time.Second,
		MaxAffected: maxAffected,
	}
}

var fiveNodes = []string{"node-0", "node-1", "node-2", "node-3", "node-4"}

func TestPlanIsReproducible(t *testing.T) {
	a := faults.Plan(scheduleConfig(7, 2), fiveNodes)
	b := faults.Plan(scheduleConfig(7, 2), fiveNodes)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("two plans from the same seed differ")
	}
	if c := faults.Plan(scheduleConfig(8, 2), fiveNodes); reflect.DeepEqual(a, c) {
		t.Fatal("plans from different seeds are the same")
	}
}

// At every instant: at most MaxAffected nodes affected, no node affected
// twice, at most one network fault; every kind drawn; all within the period.
func TestPlanKeepsItsBounds(t *testing.T) {
	for _, maxAffected := range []int{2, 3} {
		t.Run(fmt.Sprint(maxAffected), func(t *testing.T) {
			cfg := scheduleConfig(1, maxAffected)
			plan := faults.Plan(cfg, fiveNodes)
			kinds := map[faults.Kind]int{}
			for i, f := range plan {
				kinds[f.Kind]++
				if f.At < 0 || f.At+f.For > cfg.Period || f.For <= 0 {
					t.Fatalf("fault %d (%s) at %s lies outside the period", i, f, f.At)
				}
				var affected []string
				network := 0
				for _, g := range plan {
					if g.At <= f.At && f.At < g.At+g.For {
						affected = append(affected, g.Nodes...)
						if g.Kind == faults.KindPartition || g.Kind == faults.KindIsolate {
							network++
						}
					}
				}
				sorted := slices.Sorted(slices.Values(affected))
				if len(affected) > maxAffected || len(slices.Compact(sorted)) != len(affected) || network > 1 {
					t.Fatalf("at %s: affected %v, %d network faults", f.At, affected, network)
				}
			}
			for _, k := range faults.AllKinds {
				if kinds[k] == 0 {
					t.Errorf("no %s fault in %d", k, len(plan))
				}
			}
			t.Logf("%d faults in %s: %v", len(plan), cfg.Period, kinds)
		})
	}
}
