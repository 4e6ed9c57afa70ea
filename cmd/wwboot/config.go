package main

// defaultConfigText is the wwboot.conf that `wwboot init` writes; `wwboot
// serve` reads it, and its flags override it.
const defaultConfigText = `# wwboot server settings. Flags of 'wwboot serve' override these.
# listen: the server's address on the cluster network (empty: the first address of interface)
listen: ""
# interface: the cluster network interface DHCP answers on
interface: ""
# dhcp: full (addresses and boot), proxy (boot information beside another DHCP server) or off
dhcp: full
# tftp: serve the iPXE binaries over TFTP
tftp: true
# http port of the provisioning service
http port: 9873
`
