package netnstest

import (
	"context"
	"errors"
	"testing"
)

type rig struct{ closed int }

func (r *rig) Close() error {
	r.closed++
	return nil
}

// TestOpen checks that Open hands over what open made, with the test's
// context, and closes it once when the test ends.
func TestOpen(t *testing.T) {
	var r *rig
	t.Run("Test", func(t *testing.T) {
		r = Open(t, "rigtest", func(ctx context.Context) (*rig, error) {
			if ctx.Err() != nil {
				return nil, errors.New("open given a done context")
			}
			return &rig{}, nil
		})
		if r.closed != 0 {
			t.Errorf("rig closed %d times before the test ended", r.closed)
		}
	})
	if r == nil || r.closed != 1 {
		t.Errorf("rig %+v: want it closed once when the test ended", r)
	}
}
