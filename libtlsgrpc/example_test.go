package libtlsgrpc_test

import (
	"context"
	"fmt"
	"log"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"

	libtls "github.com/golibtls/libtls"
	"github.com/golibtls/libtls/internal/testcert"
	"github.com/golibtls/libtls/libtlsgrpc"
)

// A gRPC server and client on golibtls with mutual TLS: the server's
// handler reads the client's certificate from the call's peer. The
// throwaway CA and certificates stand for files (SetKeypairFile,
// SetCAFile).
func ExampleNewCredentials() {
	ca, err := testcert.NewCA("example CA")
	if err != nil {
		log.Fatal(err)
	}
	serverCert, err := ca.Issue("localhost", "127.0.0.1")
	if err != nil {
		log.Fatal(err)
	}
	clientCert, err := ca.Issue("billing-service")
	if err != nil {
		log.Fatal(err)
	}

	// The server: its certificate, and client certificates from ca.
	srvCfg, err := libtls.NewConfig()
	if err != nil {
		log.Fatal(err)
	}
	defer srvCfg.Close()
	if err := srvCfg.SetKeypair(serverCert.CertPEM, serverCert.KeyPEM); err != nil {
		log.Fatal(err)
	}
	if err := srvCfg.SetCA(ca.CertPEM); err != nil {
		log.Fatal(err)
	}
	if err := srvCfg.VerifyClient(); err != nil {
		log.Fatal(err)
	}
	whoCalled := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		p, _ := peer.FromContext(ctx)
		if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok {
			fmt.Println("server: call from", ti.State.PeerCertificates[0].Subject.CommonName)
		}
		return handler(ctx, req)
	}
	srv := grpc.NewServer(grpc.Creds(libtlsgrpc.NewCredentials(srvCfg)), grpc.UnaryInterceptor(whoCalled))
	healthpb.RegisterHealthServer(srv, health.NewServer())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Stop()

	// The client: the CA that verifies the server, and its certificate.
	cliCfg, err := libtls.NewConfig()
	if err != nil {
		log.Fatal(err)
	}
	defer cliCfg.Close()
	if err := cliCfg.SetCA(ca.CertPEM); err != nil {
		log.Fatal(err)
	}
	if err := cliCfg.SetKeypair(clientCert.CertPEM, clientCert.KeyPEM); err != nil {
		log.Fatal(err)
	}
	cc, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(libtlsgrpc.NewCredentials(cliCfg)))
	if err != nil {
		log.Fatal(err)
	}
	defer cc.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var p peer.Peer
	resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Peer(&p))
	if err != nil {
		log.Fatal(err)
	}
	ti := p.AuthInfo.(credentials.TLSInfo)
	fmt.Println("client:", resp.GetStatus(), "from", ti.State.PeerCertificates[0].Subject.CommonName,
		"over", ti.State.NegotiatedProtocol, ti.SecurityLevel)
	// Output:
	// server: call from billing-service
	// client: SERVING from localhost over h2 PrivacyAndIntegrity
}
