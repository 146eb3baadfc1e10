package testenv

import (
	"net"
	"sync"
	"testing"
)

// ServeTCP accepts connections on a free loopback port until the test
// ends and gives each to handle, for servers that misbehave below HTTP
// (answer nothing, reset). A connection handle leaves open is closed when
// the test ends. It returns the address.
func ServeTCP(t testing.TB, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
		wg    sync.WaitGroup
	)
	wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return // the listener is closed
			}
			mu.Lock()
			conns = append(conns, conn)
			mu.Unlock()
			handle(conn)
		}
	})
	t.Cleanup(func() {
		_ = ln.Close()
		wg.Wait()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return ln.Addr().String()
}
