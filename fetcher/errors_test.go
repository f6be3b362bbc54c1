package fetcher

import (
	"errors"
	"fmt"
	"testing"

	"github.com/containers/image/v5/docker"
	ociarchive "github.com/containers/image/v5/oci/archive"
	ocilayout "github.com/containers/image/v5/oci/layout"
	"github.com/containers/image/v5/signature"
)

// TestClassifyTypedErrors pins the class of each containers/image error
// type classify knows, found through a wrap, and the HTTP statuses it
// does not classify.
func TestClassifyTypedErrors(t *testing.T) {
	for _, c := range []struct {
		name string
		err  error
		want error
	}{
		{"bad credentials", docker.ErrUnauthorizedForCredentials{Err: errors.New("401")}, ErrUnauthorized},
		{"HTTP 404", docker.UnexpectedHTTPStatusError{StatusCode: 404}, ErrNotFound},
		{"HTTP 401", docker.UnexpectedHTTPStatusError{StatusCode: 401}, ErrUnauthorized},
		{"HTTP 403", docker.UnexpectedHTTPStatusError{StatusCode: 403}, ErrUnauthorized},
		{"HTTP 500", docker.UnexpectedHTTPStatusError{StatusCode: 500}, nil},
		{"no image in the layout", ocilayout.ImageNotFoundError{}, ErrNotFound},
		{"no image in the archive", ociarchive.ImageNotFoundError{}, ErrNotFound},
		{"no archive", ociarchive.ArchiveFileNotFoundError{}, ErrNotFound},
		{"policy", signature.PolicyRequirementError("rejected"), ErrPolicyDenied},
		{"other", errors.New("something else"), nil},
	} {
		if got := classify(fmt.Errorf("open x: %w", c.err)); got != c.want {
			t.Errorf("%s: classify = %v, want %v", c.name, got, c.want)
		}
	}
}
