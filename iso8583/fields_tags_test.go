package iso8583

import (
	"reflect"
	"strconv"
	"testing"
)

// TestFieldsTags keeps the element tables (Pack, Unpack, FieldsOf) in step with the
// iso8583 tags of Fields: every tagged element is in exactly one table, under
// its tag's number, and the table's accessor reaches that very struct field.
func TestFieldsTags(t *testing.T) {
	typ := reflect.TypeFor[Fields]()
	seen := map[int]bool{}
	for i := range typ.NumField() {
		sf := typ.Field(i)
		tag := sf.Tag.Get("iso8583")
		id, err := strconv.Atoi(tag)
		if err != nil {
			t.Fatalf("Fields.%s: tag %q is not a number", sf.Name, tag)
		}
		seen[id] = true
		var f Fields
		found := 0
		for _, e := range stringElems {
			if e.id == id {
				found++
				*e.ptr(&f) = "marker"
			}
		}
		for _, e := range binaryElems {
			if e.id == id {
				found++
				*e.ptr(&f) = []byte("marker")
			}
		}
		if id == 48 {
			found++
			f.Additional = &AdditionalData{TellerID: "marker"}
		}
		if found != 1 {
			t.Errorf("Fields.%s (DE %d) is in %d element tables, want 1", sf.Name, id, found)
			continue
		}
		if reflect.ValueOf(f).Field(i).IsZero() {
			t.Errorf("the accessor for DE %d does not reach Fields.%s", id, sf.Name)
		}
	}
	for _, e := range stringElems {
		if !seen[e.id] {
			t.Errorf("stringElems has DE %d, which no Fields tag names", e.id)
		}
	}
	for _, e := range binaryElems {
		if !seen[e.id] {
			t.Errorf("binaryElems has DE %d, which no Fields tag names", e.id)
		}
	}
}
