package idemecho

import (
	"net/http"

	"github.com/labstack/echo/v5"

	"github.com/idemkv/idemkv/engine/idemhttp"
)

// Middleware returns echo middleware that gives the routes after it the
// contract of m (see the package documentation). One Middleware may serve
// any number of Echo instances and routes; they share its options and
// statistics.
func Middleware(m *idemhttp.Middleware) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c *echo.Context) error {
			var err error
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				outerW, outerR := c.Response(), c.Request()
				c.SetResponse(echo.NewResponse(w, c.Echo().Logger))
				c.SetRequest(r)
				defer func() {
					c.SetResponse(outerW)
					c.SetRequest(outerR)
				}()
				if err = next(c); err != nil {
					// Render the error now, into what is recorded, rather
					// than after the chain, when it is too late to record.
					c.Echo().HTTPErrorHandler(c, err)
				}
			})
			m.ServeRoute(c.Response(), c.Request(), c.Path(), h)
			return err
		}
	}
}
