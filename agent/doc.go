// Package agent is the node side of wwboot: a small program on every booted
// node that keeps the node's runtime overlay current and tells the server
// how the node is doing.
//
// An [Agent] fetches the runtime overlay (GET /overlay/runtime/{mac}) from a
// privileged source port (below 1024: only root on the node can ask, which
// is Warewulf's "secure" mode), applies it under its Root as one unit (see
// [Apply]), then asks again with the archive's ETag in If-None-Match and
// ?wait=SECONDS: the server holds that request until the overlay changes
// (200 and the new archive) or the wait ends (304), so a change reaches the
// node within about a second of the server seeing it, with no periodic
// polling. Failed requests are retried with jittered exponential backoff.
// Beside it, heartbeats (POST /agent/{mac}) tell the server the node is up;
// [Agent.Report] sends one state (failed, booting, up) with a reason.
//
// The package uses only the standard library and its own minimal HTTP/1.1
// client and newc cpio reader, so that the static binary built from
// cmd/wwboot-agent stays small: it sits in every node's memory.
package agent
