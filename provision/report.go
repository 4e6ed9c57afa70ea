package provision

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"unicode"
)

// Report is the body of POST /agent/{mac}: a node agent's heartbeat (state
// up) or a report of its state, as JSON
// {"state":"up|booting|failed","stage":"init|agent|...","reason":"..."}.
type Report struct {
	// State is up, booting or failed.
	State string `json:"state"`
	// Stage is where the node is: init (/init), agent, or another short
	// word (letters, digits, . _ -; at most 32 bytes).
	Stage string `json:"stage,omitempty"`
	// Reason says why, for a person; at most MaxReason bytes, control
	// characters replaced.
	Reason string `json:"reason,omitempty"`
}

// MaxReason bounds Report.Reason (bytes); a longer one is cut.
const MaxReason = 512

// maxReportBody bounds the body of POST /agent/{mac}.
const maxReportBody = 4 << 10

// ParseReport reads and checks a report body: JSON with a known state, a
// short stage word and a printable reason (cut to MaxReason bytes, control
// characters replaced by spaces). Unknown fields are ignored, so newer
// agents can add some.
func ParseReport(b []byte) (Report, error) {
	var rep Report
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&rep); err != nil {
		return rep, fmt.Errorf("report: %w (send JSON {\"state\":\"up|booting|failed\",\"stage\":\"...\",\"reason\":\"...\"})", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return rep, errors.New("report: data after the JSON object")
	}
	switch rep.State {
	case StateUp, StateBooting, StateFailed:
	default:
		return rep, fmt.Errorf("report: state %q: use up, booting or failed", truncate(rep.State, 32))
	}
	if len(rep.Stage) > 32 || strings.IndexFunc(rep.Stage, func(r rune) bool {
		return !(r == '.' || r == '_' || r == '-' || ('a' <= r && r <= 'z') || ('A' <= r && r <= 'Z') || ('0' <= r && r <= '9'))
	}) >= 0 {
		return rep, fmt.Errorf("report: stage %q: a short word (letters, digits, . _ -)", truncate(rep.Stage, 32))
	}
	reason := strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == unicode.ReplacementChar {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(rep.Reason, " "))
	if len(reason) > MaxReason {
		reason = strings.ToValidUTF8(reason[:MaxReason], "") + "..."
	}
	rep.Reason = strings.TrimSpace(reason)
	return rep, nil
}

// serveReport takes a node agent's heartbeat or report, POST /agent/{mac},
// with the same protection as the runtime overlay: from the node's own
// address, a privileged source port (secure mode), with its asset key.
// With the agent TLS channel on, a report over TLS needs the node's
// current certificate instead, and plain reports are refused once the
// node enrolled in this boot.
func (h *Handler) serveReport(w *recorder, r *http.Request) {
	hw, err := ParseMAC(r.PathValue("mac"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.hwaddr = hw.String()
	_, node, ok := h.nodeOf(w, r, hw, nil)
	if !ok {
		return
	}
	var reason, msg string
	if r.TLS != nil && h.opts.AgentTLS != nil {
		reason, msg = h.opts.AgentTLS.certAllowed(r.TLS, node)
	} else {
		// The address and port first: the node's state is for the node.
		reason, msg = h.plainAllowed(r, node, whatReport)
	}
	if t := h.opts.AgentTLS; t != nil && reason == "" && r.TLS == nil {
		switch {
		case t.enrolledThisBoot(node.ID):
			// /init's early reports come before the agent enrolls.
			reason, msg = RefusedEnrolled, fmt.Sprintf("node %s enrolled in this boot: its reports go over TLS (port %d) "+
				"with its certificate, not over plain HTTP", node.ID, t.Port)
		}
	}
	if reason != "" {
		h.refuse(w, r, node, StageAgent, reason, msg)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxReportBody+1))
	if err != nil {
		http.Error(w, "report: "+err.Error(), http.StatusBadRequest)
		return
	}
	if len(body) > maxReportBody {
		http.Error(w, fmt.Sprintf("report: larger than %d bytes", maxReportBody), http.StatusRequestEntityTooLarge)
		return
	}
	rep, err := ParseReport(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	h.status.report(node.ID, w.hwaddr, rep, h.now())
	if rep.State == StateFailed {
		h.log.Warn("node reports a failure", "node", node.ID, "stage", rep.Stage, "reason", rep.Reason)
	} else {
		h.log.Debug("node report", "node", node.ID, "state", rep.State, "stage", rep.Stage, "reason", rep.Reason)
	}
	w.WriteHeader(http.StatusNoContent)
}
