package idemhttp_test

import (
	"io"
	"log"
	"log/slog"
)

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func quietHTTPLog() *log.Logger { return log.New(io.Discard, "", 0) }
