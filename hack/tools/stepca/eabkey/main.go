// Command eabkey stores an external account binding key in a stopped
// step-ca's database, through step-ca's own storage code: the open-source
// step-ca serves no API that creates one, and the tests need a CA that
// requires external account binding. It prints the key's identifier and
// its HMAC key (base64url, as a CA shows it to its users), one per line.
//
// A provisioner of step-ca's config file has no ID, and step-ca looks its
// keys up under that empty ID, which its code refuses to create a key for
// (the index of keys by provisioner needs one). So the key is created under
// a placeholder ID and its record then names the empty one, byte for byte
// as step-ca wrote it otherwise (step-ca compares the stored bytes when it
// binds the key to an account).
//
//	eabkey -db DIR -reference NAME
package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"flag"
	"fmt"
	"os"

	acmenosql "github.com/smallstep/certificates/acme/db/nosql"
	"github.com/smallstep/certificates/db"
	"github.com/smallstep/nosql"
)

func main() {
	dir := flag.String("db", "", "the step-ca database folder (its config's db.dataSource)")
	kind := flag.String("db-type", "badgerv2", "the step-ca database type (its config's db.type)")
	provisioner := flag.String("provisioner-id", "", "the ACME provisioner's ID; empty for a provisioner of step-ca's config file")
	reference := flag.String("reference", "", "a name for the key, unique per provisioner")
	flag.Parse()
	if *dir == "" {
		fmt.Fprintln(os.Stderr, "eabkey: -db is required")
		os.Exit(2)
	}
	if err := run(*kind, *dir, *provisioner, *reference); err != nil {
		fmt.Fprintln(os.Stderr, "eabkey:", err)
		os.Exit(1)
	}
}

func run(kind, dir, provisioner, reference string) error {
	auth, err := db.New(&db.Config{Type: kind, DataSource: dir})
	if err != nil {
		return err
	}
	defer auth.Shutdown()
	store, ok := auth.(nosql.DB)
	if !ok {
		return fmt.Errorf("database type %q has no ACME tables", kind)
	}
	acmeDB, err := acmenosql.New(store)
	if err != nil {
		return err
	}
	created := provisioner
	if created == "" {
		created = placeholderID
	}
	key, err := acmeDB.CreateExternalAccountKey(context.Background(), created, reference)
	if err != nil {
		return err
	}
	if created != provisioner {
		if err := renameProvisioner(store, key.ID, created, provisioner); err != nil {
			return err
		}
	}
	fmt.Println(key.ID)
	fmt.Println(base64.RawURLEncoding.EncodeToString(key.HmacKey))
	return nil
}

const placeholderID = "config-file-provisioner"

// keysTable is the table step-ca keeps external account binding keys in.
var keysTable = []byte("acme_external_account_keys")

// renameProvisioner makes the stored key keyID name provisioner to instead.
func renameProvisioner(store nosql.DB, keyID, from, to string) error {
	record, err := store.Get(keysTable, []byte(keyID))
	if err != nil {
		return err
	}
	old := []byte(`"provisionerID":"` + from + `"`)
	if bytes.Count(record, old) != 1 {
		return fmt.Errorf("the stored key %s does not name provisioner %q once: %s", keyID, from, record)
	}
	return store.Set(keysTable, []byte(keyID), bytes.Replace(record, old, []byte(`"provisionerID":"`+to+`"`), 1))
}
