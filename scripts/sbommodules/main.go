// Command sbommodules prints the name@version of every component of a CycloneDX JSON SBOM, one a
// line: release-check compares them with the modules `go version -m` finds in the binary.
package main

import (
	"encoding/json"
	"fmt"
	"os"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: sbommodules FILE.cdx.json")
		os.Exit(2)
	}
	raw, err := os.ReadFile(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	var bom struct {
		BOMFormat  string `json:"bomFormat"`
		Components []struct {
			Name    string `json:"name"`
			Version string `json:"version"`
		} `json:"components"`
	}
	if err := json.Unmarshal(raw, &bom); err != nil || bom.BOMFormat != "CycloneDX" {
		fmt.Fprintf(os.Stderr, "%s is not a CycloneDX JSON SBOM: %v\n", os.Args[1], err)
		os.Exit(1)
	}
	for _, c := range bom.Components {
		fmt.Printf("%s@%s\n", c.Name, c.Version)
	}
}
