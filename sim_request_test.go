package inabit

// How a request runs in the simulated cluster: its bookkeeping, the schedule it logs, its outcome.

import (
	"context"
	"fmt"
	"regexp"
	"runtime"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

type simReq struct {
	label      string
	inst       *simInstance
	refreshes  int
	stats      simRequestStats
	cleanAfter bool
	stepAfter  bool // the node was deposed mid-request but notices only when the request ends
}

var simUUID = regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`)

// logf adds a line to the schedule. WAL ids are random UUIDs: they are named by first appearance
// so that a replay prints the same schedule.
func (s *sim) logf(format string, args ...interface{}) {
	name := func(line string) string {
		return simUUID.ReplaceAllStringFunc(line, func(id string) string {
			if s.uuids[id] == "" {
				s.uuids[id] = fmt.Sprintf("entry%d", len(s.uuids)+1)
			}
			return s.uuids[id]
		})
	}
	s.schedule = append(s.schedule, name(fmt.Sprintf("%4d %s  ", s.step, s.clock.now().Format("01-02 15:04:05"))+fmt.Sprintf(format, args...)))
	s.notesMu.Lock()
	for _, n := range s.notes {
		s.schedule = append(s.schedule, name("                       | "+n))
	}
	s.notes = nil
	s.notesMu.Unlock()
}

// note records what inabit and storage saw during a request; logf prints it under the request.
func (s *sim) note(format string, args ...interface{}) {
	s.notesMu.Lock()
	defer s.notesMu.Unlock()
	s.notes = append(s.notes, s.clock.now().Format("15:04:05 ")+fmt.Sprintf(format, args...))
}

// do runs one request on one instance with the bookkeeping the invariants need.
func (s *sim) do(inst *simInstance, label string, fn func() (*logical.Response, error)) (*logical.Response, error) {
	req := &simReq{label: label, inst: inst}
	s.reqs = append(s.reqs, req)
	s.store.mu.Lock()
	prev := s.store.stats
	s.store.stats = &req.stats
	s.store.mu.Unlock()
	s.model.mu.Lock()
	delivered := len(s.model.deliveries)
	s.model.mu.Unlock()
	base := runtime.NumGoroutine()

	resp, err := fn()
	if req.stepAfter {
		s.store.mu.Lock()
		inst.stepped = true
		s.store.mu.Unlock()
	}
	if req.cleanAfter {
		inst.b.Cleanup(context.Background())
	}

	// A reader whose context ended leaves the shared fetch running: let it finish, so the next
	// step starts from a settled world and a seed replays exactly.
	for deadline := time.Now().Add(5 * time.Second); runtime.NumGoroutine() > base && time.Now().Before(deadline); {
		runtime.Gosched()
	}
	if runtime.NumGoroutine() > base {
		s.violate("harness", "a goroutine started by the %s request was still running 5 s after it returned", label)
	}
	s.store.mu.Lock()
	s.store.stats = prev
	s.store.mu.Unlock()
	s.reqs = s.reqs[:len(s.reqs)-1]
	s.noteResponse(resp, err, label == "token-read")
	s.checkSaved(req, delivered)
	return resp, err
}

func (s *sim) request(inst *simInstance, label string, ctx context.Context, op logical.Operation, path string, data map[string]interface{}) (*logical.Response, error) {
	return s.do(inst, label, func() (*logical.Response, error) {
		return inst.b.HandleRequest(ctx, &logical.Request{Operation: op, Path: path, Data: data, Storage: inst.view})
	})
}

func (s *sim) noteResponse(resp *logical.Response, err error, tokenRead bool) {
	if err != nil {
		s.texts = append(s.texts, err.Error())
	}
	if resp == nil {
		return
	}
	s.texts = append(s.texts, resp.Warnings...)
	for k, v := range resp.Data {
		if tokenRead && k == "access_token" {
			continue
		}
		s.texts = append(s.texts, fmt.Sprint(v))
	}
}

func outcome(resp *logical.Response, err error) string {
	switch {
	case err != nil:
		return "error: " + err.Error()
	case resp != nil && resp.IsError():
		return "error response: " + resp.Error().Error()
	case resp != nil && len(resp.Warnings) > 0:
		return "ok, warning: " + strings.Join(resp.Warnings, " | ")
	default:
		return "ok"
	}
}
