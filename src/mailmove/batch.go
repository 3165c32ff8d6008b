package mailmove

import (
	"context"
	"fmt"
	"sort"
	"sync"

	"correo/src/cluster"
	"correo/src/pwadmin"
)

// ByStorage lists every user by storage host, from passwd.
func (d *PasswdDirectory) ByStorage(ctx context.Context) (map[string][]string, error) {
	out := map[string][]string{}
	var cursor uint64
	for {
		resp, err := d.do(ctx, pwadmin.Request{Op: pwadmin.OpUserList, Cursor: cursor, Max: 5000})
		if err != nil {
			return nil, err
		}
		for _, u := range resp.Users {
			out[u.Storage] = append(out[u.Storage], u.Name)
		}
		if resp.Next == 0 {
			return out, nil
		}
		cursor = resp.Next
	}
}

// Loads measures each storage host of the profile: its users' mailboxes
// (byStorage, from passwd) and its data_dir's file system.
func (m *Mover) Loads(ctx context.Context, byStorage map[string][]string) ([]HostLoad, error) {
	var out []HostLoad
	for _, h := range m.Profile.HostsWithRole(cluster.RoleStorage) {
		c, err := m.dial(ctx, h.Name)
		if err != nil {
			return nil, err
		}
		users := append([]string(nil), byStorage[h.Name]...)
		sort.Strings(users)
		u, err := c.Usage(users)
		c.Close()
		if err != nil {
			return nil, fmt.Errorf("measuring %s: %w", h.Name, err)
		}
		hl := HostLoad{Host: h.Name, Capacity: u.Capacity}
		for _, name := range users {
			hl.Users = append(hl.Users, UserSize{User: name, Bytes: u.Bytes[name]})
		}
		out = append(out, hl)
	}
	return out, nil
}

// RunPlan carries out plan, n moves at a time (at least 1). done is
// called once per move, from one goroutine at a time. A failed move does
// not stop the others; RunPlan returns how many failed.
func (m *Mover) RunPlan(ctx context.Context, plan []PlannedMove, n int, done func(PlannedMove, Report, error)) int {
	n = max(1, n)
	jobs := make(chan PlannedMove)
	var mu sync.Mutex
	failed := 0
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for pm := range jobs {
				// A copy per move: progress and notes are the batch's.
				mv := *m
				mv.Progress, mv.Note = nil, nil
				rep, err := mv.Move(ctx, pm.User, pm.To)
				mu.Lock()
				if err != nil {
					failed++
				}
				done(pm, rep, err)
				mu.Unlock()
			}
		}()
	}
	for _, pm := range plan {
		if ctx.Err() != nil {
			break
		}
		jobs <- pm
	}
	close(jobs)
	wg.Wait()
	return failed
}
