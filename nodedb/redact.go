package nodedb

// Redacted is what a secret reads as wherever a record is shown without
// being asked for its secrets: `wwboot node|profile list|show` without
// --secrets and every GET of the JSON API. Written back (an API update, a
// node import), it stands for "keep the stored value" (Unredact).
const Redacted = "***"

// Redact returns a copy of r whose secrets read as Redacted: the BMC
// password (ipmi: password) and the asset key (asset key). Warewulf's
// `wwctl node list --ipmi` leaves the password out for the same reason.
// r itself, and the IPMI block it points to, are not modified.
func (r Record) Redact() Record {
	if r.Ipmi != nil && r.Ipmi.Password != "" {
		ipmi := *r.Ipmi
		ipmi.Password = Redacted
		r.Ipmi = &ipmi
	}
	if r.AssetKey != "" {
		r.AssetKey = Redacted
	}
	return r
}

// Unredact puts old's secrets back into r wherever r holds Redacted (old
// may be nil: a record that did not exist). It returns the nodes.conf field
// paths that hold Redacted with nothing to restore ("ipmi password",
// "asset key"): the caller must refuse them, or the mask would become the
// password.
func (r *Record) Unredact(old *Record) (missing []string) {
	if r.Ipmi != nil && r.Ipmi.Password == Redacted {
		if old != nil && old.Ipmi != nil && old.Ipmi.Password != "" {
			r.Ipmi.Password = old.Ipmi.Password
		} else {
			missing = append(missing, "ipmi password")
		}
	}
	if r.AssetKey == Redacted {
		if old != nil && old.AssetKey != "" {
			r.AssetKey = old.AssetKey
		} else {
			missing = append(missing, "asset key")
		}
	}
	return missing
}
