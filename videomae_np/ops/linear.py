"""Linear layer in torch's layout: w is (out, in), y = x @ w.T + b."""


def linear_forward(x, w, b=None):          # x: (..., I), w: (O, I), b: (O,) | None -> y: (..., O)
    y = x @ w.T
    if b is not None:
        y += b
    return y, (x, w, b is not None)


def linear_backward(dy, cache):             # dy: (..., O) -> dx (..., I), dw (O, I), db (O,) | None
    x, w, has_bias = cache
    O, I = w.shape
    dy2 = dy.reshape(-1, O)
    dx = dy @ w
    dw = dy2.T @ x.reshape(-1, I)
    db = dy2.sum(axis=0) if has_bias else None
    return dx, dw, db
