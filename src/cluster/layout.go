package cluster

import "correo/src/mailbox"

func validLayout(s string) bool {
	_, err := mailbox.ParseScheme(s)
	return err == nil
}

func layoutNames() []string {
	var out []string
	for _, s := range mailbox.Schemes() {
		out = append(out, string(s))
	}
	return out
}

// LayoutScheme is the cluster's mailbox layout, validated at load.
func (p *Profile) LayoutScheme() mailbox.Scheme {
	s, _ := mailbox.ParseScheme(p.Cluster.Layout)
	return s
}
