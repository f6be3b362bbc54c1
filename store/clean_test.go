package store

import (
	"context"
	"testing"
)

func TestUsage(t *testing.T) {
	st := testStore(t)
	ctx := context.Background()
	shared := &fakeLayer{data: layerTar(t, entry{name: "s", body: "shared"})}
	own := &fakeLayer{data: layerTar(t, entry{name: "o", body: "own"})}
	loose := &fakeLayer{data: layerTar(t, entry{name: "l", body: "loose!!"})}
	if _, err := st.Create(ctx, CreateRequest{ID: "a", Layers: []Layer{shared.layer(), own.layer()}, DiskLimit: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Create(ctx, CreateRequest{ID: "b", Layers: []Layer{shared.layer()}}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Pull(ctx, []Layer{loose.layer()}); err != nil {
		t.Fatal(err)
	}
	want := Usage{
		LayerBytes: int64(len("shared") + len("own") + len("loose!!")), Layers: 3, UnreferencedLayers: 1,
		Images: 2, BaseBytes: int64(len("shared")+len("own")) + int64(len("shared")), DiskLimitBytes: 1 << 20,
	}
	if u, err := st.Usage(ctx, UsageOptions{}); err != nil || u != want {
		t.Errorf("usage %+v (%v), want %+v", u, err, want)
	}
	if u, err := st.Usage(ctx, UsageOptions{LayersOnly: true}); err != nil || u != (Usage{LayerBytes: want.LayerBytes, Layers: 3}) {
		t.Errorf("layers-only usage %+v (%v)", u, err)
	}
	res, err := st.Clean(ctx)
	if err != nil || res.LayersRemoved != 1 || res.ReclaimedBytes != int64(len("loose!!")) {
		t.Fatalf("clean: %+v %v, want the loose layer removed", res, err)
	}
	if u, err := st.Usage(ctx, UsageOptions{}); err != nil || u.Layers != 2 || u.UnreferencedLayers != 0 {
		t.Errorf("usage after clean %+v (%v)", u, err)
	}
}
