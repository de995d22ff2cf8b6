package rules_test

import (
	"fmt"
	"net/netip"

	"github.com/nfqguard/nfqguard/rules"
)

func Example() {
	tbl, err := rules.Parse("rules.toml", []byte(`
[[container]]
name = "web"
ips = ["172.17.0.2"]
ingress = "drop"

  [[container.rule]]
  id = "web-http"
  direction = "ingress"
  proto = "tcp"
  ports = ["80", "443"]
  action = "allow"
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	web, peer := netip.MustParseAddr("172.17.0.2"), netip.MustParseAddr("203.0.113.7")
	fmt.Printf("%+v\n", tbl.Judge(web, rules.Ingress, rules.ProtoTCP, 443, peer))
	fmt.Printf("%+v\n", tbl.Judge(web, rules.Ingress, rules.ProtoTCP, 22, peer))
	// Output:
	// {Action:allow RuleID:web-http Container:web Log:false Need:none Name:0}
	// {Action:drop RuleID:default Container:web Log:false Need:none Name:0}
}

func ExampleParse_errors() {
	_, err := rules.Parse("rules.toml", []byte(`
[engine]
queue = 70000

[[container]]
name = "web"
  [[container.rule]]
  id = "r"
  direction = "ingress"
  prots = ["80"]
  action = "accept"
`))
	fmt.Println(err)
	// Output:
	// rules.toml:3:1: engine.queue: 70000 is out of range 0..65535
	// rules.toml:10:3: container[0].rule[0].prots: unknown key "prots" in [[container.rule]] (did you mean "proto" or "ports"?)
	// rules.toml:11:3: container[0].rule[0].action: "accept" is not an action; use "allow" or "drop"
}
