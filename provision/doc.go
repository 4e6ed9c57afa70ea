// Package provision is wwboot's provisioning service: the HTTP handler that
// hands a booting node its iPXE script, kernel, image and overlays, the
// per-node boot status, and a Server that runs DHCP, TFTP and HTTP together.
//
// # The handler
//
// Handler is an http.Handler serving
//
//	GET /ipxe/{mac}              the node's iPXE script (the unknown-node script for a MAC not in the inventory)
//	GET /kernel/{mac}            the kernel of the node's image
//	GET /image/{mac}             the node's image (compressed newc cpio)
//	GET /overlay/system/{mac}    the node's system overlay archive (refused if it carries a secret, see below)
//	GET /overlay/runtime/{mac}   the node's runtime overlay archive (secured, see below; long-poll with ?wait=)
//	POST /agent/{mac}            the node agent's heartbeat or report, JSON (secured like the runtime overlay)
//	POST /agent/enroll/{mac}     the node agent's certificate request, once per boot (Options.AgentTLS; see enroll.go)
//	GET /boot/{file}             iPXE binaries for UEFI HTTP Boot (Options.BootFS)
//	GET /status                  per-node state (up, booting, down, failed) and why, JSON (administrators only)
//	GET /healthz                 "ok"
//	GET /metrics                 Prometheus metrics of Options.Registry (administrators only)
//
// and Warewulf's paths, so Warewulf iPXE templates work unchanged:
// /provision/{mac}?stage=ipxe|kernel|image|container|system|runtime,
// /ipxe/, /kernel/, /image/, /container/, /system/, /runtime/,
// /overlay-system/ and /overlay-runtime/, with ?compress=gz and
// ?assetkey=KEY. A MAC is accepted as aa:bb:cc:dd:ee:ff, aa-bb-cc-dd-ee-ff
// (iPXE's ${mac:hexhyp}), in either case, and in the other forms
// nodedb.ParseHW reads.
//
// API (NewAPI; API.Wrap puts it in front of the handler) serves the JSON
// REST API under /api/v1/ described by OpenAPI (openapi.json): nodes,
// profiles, images, overlays, status, power and the event stream, with
// TokenAuth. With Options.Events the status tracker publishes node state
// changes and boot stages (events.go).
//
// Kernels and images go out with http.ServeContent over an *os.File, so the
// kernel copies them with sendfile; responses carry Content-Length, Last-Modified
// and a strong ETag (the image's sha256, the overlay archive's content hash)
// and honour Range, If-Range, If-None-Match and If-Modified-Since.
//
// Nothing is read from disk per request but the file served: the inventory,
// image metadata and iPXE templates are held in memory by their stores, and
// each node's rendered iPXE script is cached until the inventory snapshot
// changes or Handler.Reload is called. With Options.AgentTLS, a request over
// TLS (and the first boot-chain request after an enrollment) also stats the
// node's enrollment record, so that a revocation from another process
// (RevokeEnrollments) counts at once.
//
// # The runtime overlay
//
// The runtime overlay carries secrets (keys, passwords), so it goes only to the
// node it belongs to: the request must come from a privileged source port
// (below 1024, Warewulf's "secure" mode, which only root on the node can use;
// Options.InsecurePorts turns this check off), from one of the node's
// configured addresses (Options.AnySourceAddr turns this off), and carry the
// node's asset key when it has one. Refusals are 403 and counted.
//
// The system overlay goes to anyone who asks for a node's MAC (iPXE fetches
// it from an unprivileged port, so no check a node could pass applies), so it
// must carry no secret: an archive with private files
// (overlay.Archive.Private: private keys, included files others may not
// read) is refused with 500 and ErrSystemSecret's explanation, unless
// Options.SystemSecrets accepts Warewulf's exposure.
//
// # The listings
//
// /status and /metrics name nodes, MACs and addresses, which would tell an
// attacker which node files to ask for; nodes never need them. They answer
// only the server itself (FromServer: loopback, or a connection from the
// address it arrived on; the API's reads use the same rule),
// Options.Admin's networks, and its bearer token; everyone else gets 403.
//
// Every boot-chain request for a node's files must carry the node's
// asset key, when the node has one, as ?assetkey=KEY, which is how Warewulf's
// templates pass iPXE's ${asset} (the machine's SMBIOS asset tag). wwboot's
// default script adds it to its URLs for such nodes. A request for the iPXE
// script with no ?assetkey= at all gets a script that asks again with
// ${asset} (wwboot's DHCP URL carries none); a wrong key gets 403. Neither
// counts as the node's request: no status, no event, no new enrollment.
//
// The node agent (package agent) keeps the runtime overlay current with a
// long-poll: GET /overlay/runtime/{mac}?wait=SECONDS (at most 300) with
// If-None-Match naming the archive it has is held until the archive changes
// (200 and the new one) or the wait ends (304). The handler notices a new
// inventory snapshot within Options.WatchInterval and wakes the waiters;
// Handler.Notify wakes them for other changes (site overlay files). Held
// requests are detached from net/http (hijacked), so that an idle agent
// costs a connection and about two kilobytes, not a goroutine; Server.Shutdown
// (or Handler.StopWaiting) answers them 304.
//
// # Node status
//
// Each node's state is worked out from what it did: up while its agent's
// heartbeats (POST /agent/{mac} with state up, every 30 s) are fresher than
// Options.HeartbeatTimeout; booting while it fetches its boot files (or
// reports booting) within Options.BootTimeout; failed once it reports a
// failure (until it boots again), with its reason; down otherwise, with
// how long it has been quiet.
//
// # Interfaces
//
// The handler reaches its data through small interfaces, so an embedding
// program can swap any of them: Inventory (nodedb's stores, or a scheduler's
// own database), Images (*image.Store), Overlays (*overlay.Renderer) and
// Scripts (*ipxe.Set).
//
// # The server
//
// Server runs the handler on HTTP, package dhcp's policy and server on the
// cluster interfaces, package tftp's server over the iPXE binaries, and
// package ipxe's router advertiser (which saves iPXE a 15 s wait for IPv6
// routers). Serve(ctx) runs until ctx ends, then drains: transfers under way
// finish before it returns.
package provision
