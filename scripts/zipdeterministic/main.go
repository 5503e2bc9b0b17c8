// Command zipdeterministic writes a zip archive holding one file, with a fixed name, mode and
// modification time, so the same input always gives the same bytes. scripts/release.sh uses it
// for the release zips; `zip` would store the file's real mtime, owner ids and platform fields.
//
//	go run ./scripts/zipdeterministic -in bin/plugin -name vault-plugin-secrets-inabit \
//	    -mtime 1764480073 -out dist/plugin.zip
package main

import (
	"archive/zip"
	"bytes"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"time"
)

func main() {
	in := flag.String("in", "", "file to store")
	name := flag.String("name", "", "name of the file inside the zip (default: -in)")
	out := flag.String("out", "", "zip to write")
	mtime := flag.Int64("mtime", 315532800, "modification time to store, Unix seconds (zip cannot hold times before 1980)")
	mode := flag.Uint("mode", 0o755, "file mode to store")
	flag.Parse()
	if *in == "" || *out == "" || flag.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "usage: zipdeterministic -in FILE -out ZIP [-name NAME] [-mtime UNIX] [-mode 0755]")
		os.Exit(2)
	}
	if *name == "" {
		*name = *in
	}
	if err := write(*in, *name, *out, time.Unix(*mtime, 0).UTC(), fs.FileMode(*mode)); err != nil {
		fmt.Fprintln(os.Stderr, "zipdeterministic:", err)
		os.Exit(1)
	}
}

func write(in, name, out string, mtime time.Time, mode fs.FileMode) error {
	if mtime.Year() < 1980 {
		return fmt.Errorf("mtime %s is before 1980, which a zip cannot store", mtime.Format(time.RFC3339))
	}
	data, err := os.ReadFile(in)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	// Modified in UTC: the DOS time field is written in Modified's location, so a local zone
	// would make the bytes depend on the machine's TZ.
	hdr := &zip.FileHeader{Name: name, Method: zip.Deflate, Modified: mtime}
	hdr.SetMode(mode) // also marks the entry as made on Unix, so unzip restores the mode
	w, err := zw.CreateHeader(hdr)
	if err != nil {
		return err
	}
	if _, err := w.Write(data); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	return os.WriteFile(out, buf.Bytes(), 0o644)
}
