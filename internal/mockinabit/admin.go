package mockinabit

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// faultNames are the wire names of the fault kinds in the control API (POST /admin/faults).
var faultNames = map[FaultKind]string{
	FaultStatus:                 "status",
	FaultGraphQLError:           "graphql-error",
	FaultGarbage:                "garbage",
	FaultOversize:               "oversize",
	FaultDelay:                  "delay",
	FaultDropAfterApply:         "drop-after-apply",
	FaultHoldAfterApply:         "hold-after-apply",
	FaultHang:                   "hang",
	FaultPartial:                "partial",
	FaultErrorsNotList:          "errors-not-list",
	FaultErrorsMessageNotString: "errors-message-not-string",
	FaultBOM:                    "bom",
	FaultLeadingSpace:           "leading-space",
	FaultTrailingNewline:        "trailing-newline",
	FaultGateway401:             "gateway-401",
	FaultRetryAfterHuge:         "retry-after-huge",
}

// String is the kind's wire name, e.g. "hold-after-apply".
func (k FaultKind) String() string {
	if n, ok := faultNames[k]; ok {
		return n
	}
	return fmt.Sprintf("FaultKind(%d)", int(k))
}

// ParseFaultKind turns a wire name back into a kind.
func ParseFaultKind(name string) (FaultKind, error) {
	for k, n := range faultNames {
		if n == name {
			return k, nil
		}
	}
	return 0, fmt.Errorf("unknown fault kind %q", name)
}

// FaultJSON is a Fault on the wire: kind by name, delay as a Go duration ("300ms").
type FaultJSON struct {
	Kind        string `json:"kind"`
	Status      int    `json:"status,omitempty"`
	Body        string `json:"body,omitempty"`
	ContentType string `json:"content_type,omitempty"`
	RetryAfter  string `json:"retry_after,omitempty"`
	Code        string `json:"code,omitempty"`
	Message     string `json:"message,omitempty"`
	Delay       string `json:"delay,omitempty"`
	Size        int    `json:"size,omitempty"`
	Times       int    `json:"times,omitempty"`
}

// Fault turns the wire form into a Fault.
func (j FaultJSON) Fault() (Fault, error) {
	kind, err := ParseFaultKind(j.Kind)
	if err != nil {
		return Fault{}, err
	}
	f := Fault{Kind: kind, Status: j.Status, Body: j.Body, ContentType: j.ContentType, RetryAfter: j.RetryAfter,
		Code: j.Code, Message: j.Message, Size: j.Size, Times: j.Times}
	if j.Delay != "" {
		if f.Delay, err = time.ParseDuration(j.Delay); err != nil || f.Delay < 0 {
			return Fault{}, fmt.Errorf("delay %q: want a Go duration such as 300ms", j.Delay)
		}
	}
	if f.Times < 0 || f.Size < 0 || f.Size > 64<<20 {
		return Fault{}, fmt.Errorf("times must be >= 0 and size within 0..64 MiB")
	}
	if f.Kind == FaultStatus && (f.Status < 100 || f.Status > 999) {
		return Fault{}, fmt.Errorf("kind status needs a status between 100 and 999")
	}
	return f, nil
}

// JSON is f's wire form.
func (f Fault) JSON() FaultJSON {
	j := FaultJSON{Kind: f.Kind.String(), Status: f.Status, Body: f.Body, ContentType: f.ContentType, RetryAfter: f.RetryAfter,
		Code: f.Code, Message: f.Message, Size: f.Size, Times: f.Times}
	if f.Delay != 0 {
		j.Delay = f.Delay.String()
	}
	return j
}

func parseOp(name string) (Op, error) {
	switch Op(name) {
	case OpAccessToken, OpRefresh:
		return Op(name), nil
	}
	return "", fmt.Errorf("op=%q: want %s or %s", name, OpAccessToken, OpRefresh)
}

// durationParam reads a positive Go duration from the query, def when absent, capped at max.
func durationParam(r *http.Request, name string, def, max time.Duration) (time.Duration, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%s=%q: want a Go duration such as 10s", name, v)
	}
	if d > max {
		d = max
	}
	return d, nil
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// AdminHandler serves the mock's control API for scripts and the e2e suite (which runs
// cmd/mock-inabit as a process per mock and drives it through e2e/internal/mockctl); mount it on
// /admin/ next to Handler, as cmd/mock-inabit does. Every answer is JSON; errors are 4xx with a
// plain-text reason.
//
//	GET    /admin/ttl                         {"login_ttl":"720h0m0s","access_ttl":"15m0s"}
//	POST   /admin/ttl?login=90s&access=60s    lifetimes of tokens minted from now on (either may be omitted); answers as GET
//	GET    /admin/login-token                 {"login_token":"eyJ..."} ("" after a revocation)
//	POST   /admin/login-token                 IssueLoginToken: a new live token, the old dies; answers as GET
//	POST   /admin/revoke                      RevokeLoginToken: the live token dies, none replaces it; {"login_token":""}
//	POST   /admin/valid/login    {"token":t}  {"valid":bool}: t is the live, unexpired login token
//	POST   /admin/valid/access   {"token":t}  {"valid":bool}: t is an unexpired access token this mock minted
//	GET    /admin/counts                      {"calls":{op:n},"rejected":{op:n},"limited":{op:n},
//	                                          "in_flight":{op:n},"peak_in_flight":{op:n},"users":n}
//	DELETE /admin/counts                      ResetCalls (every user's counters too); answers as GET
//	GET    /admin/history                     {"calls_per_second":{op:{"<unix second>":n}},"limited_per_second":{op:{…}},
//	                                          "refreshes_applied_per_second":{"<unix second>":n}}, the last 3 h
//	POST   /admin/users?n=N                   CreateUsers: {"users":[{"id":"user-0001","login_token":"eyJ..."}, ...]}
//	                                          (N at most MaxUsersPerCall)
//	GET    /admin/users                       {"users":[UserStats, ...]}, the default user first
//	GET    /admin/users/{id}                  that user's UserStats plus its live "login_token"
//	GET    /admin/rate-limit                  {"per_second":n,"limited":{op:n}} (0: no limit)
//	POST   /admin/rate-limit?per_second=N     SetRateLimit(N): beyond N calls in a second, 429 with
//	                                          Retry-After: 1; answers as GET
//	DELETE /admin/rate-limit                  SetRateLimit(0); answers as GET
//	POST   /admin/faults?op=OP   FaultJSON    InjectFault (OP is getApiUserAccessToken or refreshApiUserLoginToken)
//	DELETE /admin/faults                      ClearFaults (and releases held answers)
//	POST   /admin/wait-idle?timeout=10s       {"idle":bool}: WaitIdle (timeout at most 5m)
//	GET    /admin/applied?wait=10s            {"op":OP} for the next call a fault handler applied, or
//	                                          {"op":""} when none came within wait (at most 5m);
//	                                          each signal is delivered once, as on Applied()
func (s *Server) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/admin/ttl", func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodGet:
		case http.MethodPost:
			var set [2]time.Duration
			for i, name := range []string{"login", "access"} {
				v := r.URL.Query().Get(name)
				if v == "" {
					continue
				}
				d, err := time.ParseDuration(v)
				if err != nil || d <= 0 {
					http.Error(w, fmt.Sprintf("%s=%q: want a positive Go duration such as 90s", name, v), http.StatusBadRequest)
					return
				}
				set[i] = d
			}
			s.SetTTLs(set[0], set[1])
		default:
			http.Error(w, "GET or POST /admin/ttl?login=90s&access=60s", http.StatusMethodNotAllowed)
			return
		}
		login, access := s.TTLs()
		writeJSON(w, map[string]string{"login_ttl": login.String(), "access_ttl": access.String()})
	})
	mux.HandleFunc("GET /admin/login-token", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, map[string]string{"login_token": s.LoginToken()})
	})
	mux.HandleFunc("POST /admin/login-token", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, map[string]string{"login_token": s.IssueLoginToken()})
	})
	mux.HandleFunc("POST /admin/revoke", func(w http.ResponseWriter, r *http.Request) {
		s.RevokeLoginToken()
		writeJSON(w, map[string]string{"login_token": s.LoginToken()})
	})
	mux.HandleFunc("POST /admin/valid/{kind}", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Token string `json:"token"`
		}
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&req); err != nil {
			http.Error(w, "want {\"token\": \"...\"}: "+err.Error(), http.StatusBadRequest)
			return
		}
		var valid bool
		switch r.PathValue("kind") {
		case "login":
			valid = s.LoginTokenValid(req.Token)
		case "access":
			valid = s.AccessTokenValid(req.Token)
		default:
			http.Error(w, "POST /admin/valid/login or /admin/valid/access", http.StatusNotFound)
			return
		}
		writeJSON(w, map[string]bool{"valid": valid})
	})
	ops := []Op{OpAccessToken, OpRefresh}
	counts := func(w http.ResponseWriter) {
		out := map[string]any{}
		for name, get := range map[string]func(Op) int{"calls": s.Calls, "rejected": s.Rejected, "limited": s.Limited,
			"in_flight": s.InFlight, "peak_in_flight": s.PeakInFlight} {
			m := map[Op]int{}
			for _, op := range ops {
				m[op] = get(op)
			}
			out[name] = m
		}
		out["users"] = len(s.Users())
		writeJSON(w, out)
	}
	mux.HandleFunc("GET /admin/counts", func(w http.ResponseWriter, r *http.Request) { counts(w) })
	mux.HandleFunc("DELETE /admin/counts", func(w http.ResponseWriter, r *http.Request) {
		s.ResetCalls()
		counts(w)
	})
	mux.HandleFunc("GET /admin/history", func(w http.ResponseWriter, r *http.Request) {
		wire := func(h map[int64]int) map[string]int {
			m := make(map[string]int, len(h))
			for sec, n := range h {
				m[strconv.FormatInt(sec, 10)] = n
			}
			return m
		}
		calls, limited := map[Op]map[string]int{}, map[Op]map[string]int{}
		for _, op := range ops {
			calls[op], limited[op] = wire(s.CallsPerSecond(op)), wire(s.LimitedPerSecond(op))
		}
		writeJSON(w, map[string]any{"calls_per_second": calls, "limited_per_second": limited,
			"refreshes_applied_per_second": wire(s.RefreshesAppliedPerSecond())})
	})
	mux.HandleFunc("POST /admin/users", func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.Atoi(r.URL.Query().Get("n"))
		if err != nil || n < 1 || n > MaxUsersPerCall {
			http.Error(w, fmt.Sprintf("n=%q: want how many users to create, 1..%d", r.URL.Query().Get("n"), MaxUsersPerCall), http.StatusBadRequest)
			return
		}
		writeJSON(w, map[string][]User{"users": s.CreateUsers(n)})
	})
	mux.HandleFunc("GET /admin/users", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, map[string][]UserStats{"users": s.Users()})
	})
	mux.HandleFunc("GET /admin/users/{id}", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		st, ok := s.UserStatsOf(id)
		tok, _ := s.UserLoginToken(id)
		if !ok {
			http.Error(w, fmt.Sprintf("no user %q", id), http.StatusNotFound)
			return
		}
		writeJSON(w, struct {
			UserStats
			LoginToken string `json:"login_token"`
		}{st, tok})
	})
	rateLimit := func(w http.ResponseWriter) {
		limited := map[Op]int{}
		for _, op := range ops {
			limited[op] = s.Limited(op)
		}
		writeJSON(w, map[string]any{"per_second": s.RateLimit(), "limited": limited})
	}
	mux.HandleFunc("GET /admin/rate-limit", func(w http.ResponseWriter, r *http.Request) { rateLimit(w) })
	mux.HandleFunc("POST /admin/rate-limit", func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.Atoi(r.URL.Query().Get("per_second"))
		if err != nil || n < 0 {
			http.Error(w, fmt.Sprintf("per_second=%q: want calls per second, 0 for no limit", r.URL.Query().Get("per_second")), http.StatusBadRequest)
			return
		}
		s.SetRateLimit(n)
		rateLimit(w)
	})
	mux.HandleFunc("DELETE /admin/rate-limit", func(w http.ResponseWriter, r *http.Request) {
		s.SetRateLimit(0)
		rateLimit(w)
	})
	mux.HandleFunc("POST /admin/faults", func(w http.ResponseWriter, r *http.Request) {
		op, err := parseOp(r.URL.Query().Get("op"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var j FaultJSON
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&j); err != nil {
			http.Error(w, "want a fault as JSON: "+err.Error(), http.StatusBadRequest)
			return
		}
		f, err := j.Fault()
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		s.InjectFault(op, f)
		writeJSON(w, map[string]any{"op": op, "fault": f.JSON()})
	})
	mux.HandleFunc("DELETE /admin/faults", func(w http.ResponseWriter, r *http.Request) {
		s.ClearFaults()
		writeJSON(w, map[string]bool{"cleared": true})
	})
	mux.HandleFunc("POST /admin/wait-idle", func(w http.ResponseWriter, r *http.Request) {
		d, err := durationParam(r, "timeout", 10*time.Second, 5*time.Minute)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		writeJSON(w, map[string]bool{"idle": s.WaitIdle(d)})
	})
	mux.HandleFunc("GET /admin/applied", func(w http.ResponseWriter, r *http.Request) {
		d, err := durationParam(r, "wait", 10*time.Second, 5*time.Minute)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		timer := time.NewTimer(d)
		defer timer.Stop()
		select {
		case op := <-s.Applied():
			writeJSON(w, map[string]Op{"op": op})
		case <-timer.C:
			writeJSON(w, map[string]Op{"op": ""})
		case <-r.Context().Done():
			// The poller went away before a signal came; nothing was taken from the channel.
		}
	})
	mux.HandleFunc("/admin/", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "unknown control route "+r.Method+" "+r.URL.Path+"; see AdminHandler in internal/mockinabit/admin.go ("+
			strings.Join([]string{"ttl", "login-token", "revoke", "valid/login", "valid/access", "counts", "history", "users", "rate-limit", "faults", "wait-idle", "applied"}, ", ")+")",
			http.StatusNotFound)
	})
	return mux
}
