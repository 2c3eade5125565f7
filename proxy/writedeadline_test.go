package proxy

import (
	"net"
	"testing"
	"time"
)

// deadlineConn records the write deadlines set on it.
type deadlineConn struct {
	net.Conn
	set []time.Time
}

func (c *deadlineConn) SetWriteDeadline(t time.Time) error {
	c.set = append(c.set, t)
	return nil
}

// TestWriteDeadlineArm: the first write sets a deadline writeTimeout away; later writes leave
// it while at least half of it is left and move it when less is; a deadline set by someone
// else (the writeDeadline at 0) is replaced at the next write.
func TestWriteDeadlineArm(t *testing.T) {
	c := &deadlineConn{}
	var d writeDeadline
	check := func(step string, sets int) {
		t.Helper()
		if len(c.set) != sets {
			t.Fatalf("%s: %d deadlines set, want %d", step, len(c.set), sets)
		}
		if got := time.Until(c.set[sets-1]); got < writeTimeout/2 || got > writeTimeout {
			t.Fatalf("%s: deadline %v away, want between %v and %v", step, got, writeTimeout/2, writeTimeout)
		}
	}
	d.arm(c)
	check("first write", 1)
	d.arm(c)
	d.arm(c)
	check("writes with the deadline far", 1)
	d = writeDeadline(time.Since(epoch) + writeTimeout/2 + time.Second)
	d.arm(c)
	check("half and a second left", 1)
	d = writeDeadline(time.Since(epoch) + writeTimeout/2 - time.Second)
	d.arm(c)
	check("less than half left", 2)
	d = 0
	d.arm(c)
	check("set elsewhere", 3)
}
