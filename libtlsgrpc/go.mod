module github.com/golibtls/libtls/libtlsgrpc

go 1.26.0

// The core module lives in the parent directory and is developed with
// this one; it has no grpc-go dependency of its own.
replace github.com/golibtls/libtls => ../

require (
	github.com/golibtls/libtls v0.0.0-00010101000000-000000000000
	github.com/stretchr/testify v1.12.1
	google.golang.org/grpc v1.83.2
)

require (
	go.yaml.in/yaml/v3 v3.0.5 // indirect
	golang.org/x/net v0.62.0 // indirect
	golang.org/x/sys v0.49.0 // indirect
	golang.org/x/text v0.43.0 // indirect
	google.golang.org/genproto/googleapis/rpc v0.0.0-20260526163538-3dc84a4a5aaa // indirect
	google.golang.org/protobuf v1.36.11 // indirect
)
