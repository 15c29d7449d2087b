// watchclient: an etcd clientv3 watcher for the watch-reconnect tests. It watches a prefix and
// prints one line per event, "PUT <key> <value> <mod_revision>" or "DELETE <key> <mod_revision>",
// flushing each, until the watch channel closes ("CLOSED <error>") or it is killed. clientv3
// re-watches by itself after a retriable stream error (UNAVAILABLE), resuming after the last
// revision it delivered; a stream the server ends with OK closes the channel instead.
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: watchclient ENDPOINT PREFIX")
		os.Exit(2)
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{os.Args[1]},
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer cli.Close()
	fmt.Println("WATCHING")
	for wr := range cli.Watch(context.Background(), os.Args[2], clientv3.WithPrefix()) {
		if err := wr.Err(); err != nil {
			fmt.Printf("ERROR %v\n", err)
			continue
		}
		for _, ev := range wr.Events {
			if ev.Type == clientv3.EventTypePut {
				fmt.Printf("PUT %s %s %d\n", ev.Kv.Key, ev.Kv.Value, ev.Kv.ModRevision)
			} else {
				fmt.Printf("DELETE %s %d\n", ev.Kv.Key, ev.Kv.ModRevision)
			}
		}
	}
	fmt.Println("CLOSED")
}
