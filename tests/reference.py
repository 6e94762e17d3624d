"""Deliberately naive, independent float64 NumPy reference implementations.

These functions exist only to test the fast JAX implementation. They are
written for clarity and obvious correctness, not speed: explicit Python loops,
O(N^2)/O(N^3) memory, float64 throughout. They follow the semantics of the
PyTorch reference metrics (minyoungg/platonic-rep, metrics.py), except that
nearest-neighbour ties are broken deterministically by LOWER index first.

Every metric takes arrays a: [N, Da], b: [N, Db] and returns a Python float
(``knn`` returns an int64 array [N, k]).
"""

import numpy as np


def _f64(x):
    return np.asarray(x, dtype=np.float64)


# --------------------------------------------------------------------------
# k-nearest neighbours (inner-product similarity)
# --------------------------------------------------------------------------

def _topk_row(values, k, exclude=None):
    """Indices of the k largest entries of a 1-D array, descending by value,
    ties broken by lower index first. `exclude` (an index) is skipped."""
    values = _f64(values)
    idx = np.arange(values.shape[0])
    if exclude is not None:
        keep = idx != exclude
        idx = idx[keep]
        vals = values[keep]
    else:
        vals = values
    # np.lexsort: the LAST key is the primary key -> sort by -value, then index.
    order = np.lexsort((idx, -vals))
    return idx[order[:k]].astype(np.int64)


def knn(x, k):
    """[N, k] int64: for each i, the k indices j != i with largest x_i . x_j,
    ordered by descending similarity, ties -> lower index first."""
    x = _f64(x)
    n = x.shape[0]
    if not (1 <= k <= n - 1):
        raise ValueError(f"need 1 <= k <= N-1, got k={k}, N={n}")
    s = x @ x.T
    out = np.zeros((n, k), dtype=np.int64)
    for i in range(n):
        out[i] = _topk_row(s[i], k, exclude=i)
    return out


def mutual_knn(a, b, k):
    ka, kb = knn(a, k), knn(b, k)
    n = ka.shape[0]
    total = 0.0
    for i in range(n):
        total += len(set(ka[i].tolist()) & set(kb[i].tolist())) / k
    return float(total / n)


def cycle_knn(a, b, k):
    ka, kb = knn(a, k), knn(b, k)
    n = ka.shape[0]
    total = 0.0
    for i in range(n):
        hit = False
        for j in kb[i]:
            if i in ka[j].tolist():
                hit = True
                break
        total += 1.0 if hit else 0.0
    return float(total / n)


def _lcs_length(s, t):
    m, n = len(s), len(t)
    dp = [[0] * (n + 1) for _ in range(m + 1)]
    for i in range(1, m + 1):
        for j in range(1, n + 1):
            if s[i - 1] == t[j - 1]:
                dp[i][j] = dp[i - 1][j - 1] + 1
            else:
                dp[i][j] = max(dp[i - 1][j], dp[i][j - 1])
    return dp[m][n]


def _levenshtein(s, t):
    m, n = len(s), len(t)
    dp = [[0] * (n + 1) for _ in range(m + 1)]
    for i in range(m + 1):
        dp[i][0] = i
    for j in range(n + 1):
        dp[0][j] = j
    for i in range(1, m + 1):
        for j in range(1, n + 1):
            cost = 0 if s[i - 1] == t[j - 1] else 1
            dp[i][j] = min(dp[i - 1][j] + 1,         # deletion
                           dp[i][j - 1] + 1,         # insertion
                           dp[i - 1][j - 1] + cost)  # substitution / match
    return dp[m][n]


def lcs_knn(a, b, k):
    """Mean LCS length (0..k, not normalised) of the ordered knn lists."""
    ka, kb = knn(a, k), knn(b, k)
    n = ka.shape[0]
    total = 0.0
    for i in range(n):
        total += _lcs_length(ka[i].tolist(), kb[i].tolist())
    return float(total / n)


def edit_distance_knn(a, b, k):
    """1 - mean_i Levenshtein(knn_a(i), knn_b(i)) / k."""
    ka, kb = knn(a, k), knn(b, k)
    n = ka.shape[0]
    total = 0.0
    for i in range(n):
        total += _levenshtein(ka[i].tolist(), kb[i].tolist()) / k
    return float(1.0 - total / n)


# --------------------------------------------------------------------------
# HSIC / CKA
# --------------------------------------------------------------------------

def hsic_biased(K, L):
    """trace(K H L H), H = I - 11^T / n (no 1/(n-1)^2 factor)."""
    K, L = _f64(K), _f64(L)
    n = K.shape[0]
    H = np.eye(n) - np.ones((n, n)) / n
    return float(np.trace(K @ H @ L @ H))


def hsic_unbiased(K, L):
    """Song et al. (2012) unbiased HSIC estimator, written exactly as in the
    reference (valid for non-symmetric K, L too). Needs n >= 4."""
    K, L = _f64(K), _f64(L)
    n = K.shape[0]
    if n < 4:
        raise ValueError("hsic_unbiased needs n >= 4")
    Kt = K.copy()
    Lt = L.copy()
    for i in range(n):
        Kt[i, i] = 0.0
        Lt[i, i] = 0.0
    term1 = np.sum(Kt * Lt.T)
    term2 = np.sum(Kt) * np.sum(Lt) / ((n - 1) * (n - 2))
    term3 = 2.0 * np.sum(Kt @ Lt) / (n - 2)
    return float((term1 + term2 - term3) / (n * (n - 3)))


def _kernel(x, kernel, sigma):
    x = _f64(x)
    n = x.shape[0]
    if kernel == 'linear':
        return x @ x.T
    if kernel == 'rbf':
        K = np.zeros((n, n))
        for i in range(n):
            for j in range(n):
                d = x[i] - x[j]
                K[i, j] = np.exp(-np.dot(d, d) / (2.0 * sigma ** 2))
        return K
    raise ValueError(f"unknown kernel {kernel!r}")


def cka(a, b, kernel='linear', sigma=1.0, unbiased=False):
    K = _kernel(a, kernel, sigma)
    L = _kernel(b, kernel, sigma)
    hsic = hsic_unbiased if unbiased else hsic_biased
    kl = hsic(K, L)
    kk = hsic(K, K)
    ll = hsic(L, L)
    return float(kl / (np.sqrt(kk * ll) + 1e-6))


def unbiased_cka(a, b, kernel='linear', sigma=1.0):
    return cka(a, b, kernel=kernel, sigma=sigma, unbiased=True)


# --------------------------------------------------------------------------
# CKNNA
# --------------------------------------------------------------------------

def _topk_mask(K, k):
    n = K.shape[0]
    mask = np.zeros((n, n))
    for i in range(n):
        for j in _topk_row(K[i], k):
            mask[i, j] = 1.0
    return mask


def _cknna_similarity(K, L, k, unbiased):
    n = K.shape[0]
    if unbiased:
        K_hat = K.copy()
        L_hat = L.copy()
        for i in range(n):
            K_hat[i, i] = -np.inf
            L_hat[i, i] = -np.inf
    else:
        K_hat, L_hat = K, L
    M = _topk_mask(K_hat, k) * _topk_mask(L_hat, k)
    if unbiased:
        return hsic_unbiased(M * K, M * L)
    return hsic_biased(M * K, M * L)


def cknna(a, b, k, unbiased=True):
    a, b = _f64(a), _f64(b)
    K = a @ a.T
    L = b @ b.T
    s_kl = _cknna_similarity(K, L, k, unbiased)
    s_kk = _cknna_similarity(K, K, k, unbiased)
    s_ll = _cknna_similarity(L, L, k, unbiased)
    return float(s_kl / (np.sqrt(s_kk * s_ll) + 1e-6))


# --------------------------------------------------------------------------
# SVCCA
# --------------------------------------------------------------------------

def _standardise(x):
    x = _f64(x)
    return (x - x.mean(axis=0)) / (x.std(axis=0, ddof=1) + 1e-8)


def _top_left_singular_vectors(x, r):
    U, _, _ = np.linalg.svd(x, full_matrices=False)
    return U[:, :r]


def _svcca_bases(a, b, cca_dim):
    Ua = _top_left_singular_vectors(_standardise(a), cca_dim)
    Ub = _top_left_singular_vectors(_standardise(b), cca_dim)
    return Ua, Ub


def svcca_correlations(a, b, cca_dim=10):
    """Canonical correlations = singular values of Ua^T Ub."""
    Ua, Ub = _svcca_bases(a, b, cca_dim)
    return np.linalg.svd(Ua.T @ Ub, compute_uv=False)


def svcca(a, b, cca_dim=10):
    return float(np.mean(svcca_correlations(a, b, cca_dim)))


def _inv_sqrt_psd(S):
    w, V = np.linalg.eigh(S)
    return V @ np.diag(1.0 / np.sqrt(w)) @ V.T


def svcca_via_cca_correlations(a, b, cca_dim=10):
    """Classic CCA on the SVD-reduced bases: singular values of
    Saa^{-1/2} Sab Sbb^{-1/2} with sample covariances (explicit centring)."""
    Ua, Ub = _svcca_bases(a, b, cca_dim)
    n = Ua.shape[0]
    Xa = Ua - Ua.mean(axis=0)
    Xb = Ub - Ub.mean(axis=0)
    Saa = Xa.T @ Xa / (n - 1)
    Sbb = Xb.T @ Xb / (n - 1)
    Sab = Xa.T @ Xb / (n - 1)
    T = _inv_sqrt_psd(Saa) @ Sab @ _inv_sqrt_psd(Sbb)
    return np.linalg.svd(T, compute_uv=False)


def svcca_via_cca(a, b, cca_dim=10):
    return float(np.mean(svcca_via_cca_correlations(a, b, cca_dim)))


# --------------------------------------------------------------------------
# Feature preparation
# --------------------------------------------------------------------------

def prepare_features(x, q=0.95):
    """Clip at the exact q-quantile of |x| (index int(q*numel) into the
    ascending sort, as the reference's exact=True path), then L2-normalise
    rows. q >= 1 skips clipping (the reference returns early for q == 1).
    Row norms are floored at 1e-12 like torch.nn.functional.normalize."""
    x = _f64(x)
    if q < 1:
        flat = np.sort(np.abs(x).ravel())
        qv = flat[int(q * x.size)]
        x = np.clip(x, -qv, qv)
    out = np.zeros_like(x)
    for i in range(x.shape[0]):
        norm = np.sqrt(np.sum(x[i] ** 2))
        out[i] = x[i] / max(norm, 1e-12)
    return out


# --------------------------------------------------------------------------
# Self-check
# --------------------------------------------------------------------------

if __name__ == '__main__':
    rng = np.random.default_rng(0)
    N, Da, Db, k = 40, 16, 24, 5
    a = rng.standard_normal((N, Da))
    b = rng.standard_normal((N, Db))
    b2 = a @ rng.standard_normal((Da, Db)) + 0.5 * b  # correlated with a

    # knn basics and tie-breaking
    ka = knn(a, k)
    assert ka.shape == (N, k) and ka.dtype == np.int64
    for i in range(N):
        assert i not in ka[i]
        s = a @ a[i]
        assert np.all(np.diff(s[ka[i]]) <= 0)
    ties = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    assert knn(ties, 3).tolist()[0] == [1, 2, 3]
    assert knn(ties, 3).tolist()[3] == [0, 1, 2]
    assert _levenshtein([1, 2, 3], [2, 3, 4]) == 2
    assert _lcs_length([1, 2, 3, 4], [2, 4, 3]) == 2

    assert mutual_knn(a, a, k) == 1.0
    # cycle_knn(a, a) is NOT necessarily 1 (kNN is not symmetric); check it
    # against a direct count instead.
    direct = np.mean([any(i in ka[j] for j in ka[i]) for i in range(N)])
    assert cycle_knn(a, a, k) == direct
    assert lcs_knn(a, a, k) == k
    assert edit_distance_knn(a, a, k) == 1.0
    for f in (mutual_knn, cycle_knn, edit_distance_knn):
        v = f(a, b2, k)
        assert 0.0 <= v <= 1.0, (f.__name__, v)
    assert 0.0 <= lcs_knn(a, b2, k) <= k

    # HSIC
    K = a @ a.T
    L = b2 @ b2.T
    H = np.eye(N) - np.ones((N, N)) / N
    assert np.isclose(hsic_biased(K, L), np.sum((H @ K @ H) * L), rtol=1e-10)
    # unbiased HSIC: compare with the explicit O(n^4)-style formula via sums
    # over distinct index tuples, on a small problem
    n4 = 7
    Ks = K[:n4, :n4]
    Ls = L[:n4, :n4]
    import itertools
    t1 = sum(Ks[i, j] * Ls[i, j] for i, j in itertools.permutations(range(n4), 2))
    t2 = sum(Ks[i, j] * Ls[q_, l] for i, j, q_, l in itertools.permutations(range(n4), 4))
    t3 = sum(Ks[i, j] * Ls[i, q_] for i, j, q_ in itertools.permutations(range(n4), 3))
    from math import perm
    explicit = t1 / perm(n4, 2) + t2 / perm(n4, 4) - 2 * t3 / perm(n4, 3)
    assert np.isclose(hsic_unbiased(Ks, Ls), explicit, rtol=1e-9), (hsic_unbiased(Ks, Ls), explicit)

    # CKA
    assert abs(cka(a, a) - 1.0) < 1e-5
    assert abs(cka(a, a, kernel='rbf', sigma=4.0) - 1.0) < 1e-5
    assert abs(unbiased_cka(a, a) - 1.0) < 1e-5
    # unbiased HSIC(K,K) of an RBF kernel is small (~1e-2 here), so the +1e-6
    # in the denominator is visible: the score is exactly hkk / (hkk + 1e-6).
    Kr = _kernel(a, 'rbf', 4.0)
    hkk = hsic_unbiased(Kr, Kr)
    assert np.isclose(unbiased_cka(a, a, kernel='rbf', sigma=4.0), hkk / (hkk + 1e-6), rtol=1e-12)
    for v in (cka(a, b2), cka(a, b2, kernel='rbf', sigma=4.0), unbiased_cka(a, b2)):
        assert -1.0 <= v <= 1.0 + 1e-9
    # linear CKA is invariant to orthogonal transforms
    Q, _ = np.linalg.qr(rng.standard_normal((Da, Da)))
    assert abs(cka(a @ Q, b2) - cka(a, b2)) < 1e-10

    # CKNNA
    for ub in (True, False):
        v_same = cknna(a, a, k, unbiased=ub)
        assert abs(v_same - 1.0) < 1e-5, (ub, v_same)
        v = cknna(a, b2, k, unbiased=ub)
        assert np.isfinite(v) or np.isnan(v)

    # SVCCA
    assert abs(svcca(a, a, 10) - 1.0) < 1e-8
    for bb in (b, b2):
        c1 = svcca_correlations(a, bb, 10)
        c2 = svcca_via_cca_correlations(a, bb, 10)
        assert np.allclose(c1, c2, atol=1e-8), (c1, c2)
        assert abs(svcca(a, bb, 10) - svcca_via_cca(a, bb, 10)) < 1e-8
        assert 0.0 <= svcca(a, bb, 10) <= 1.0 + 1e-12

    # prepare_features
    p = prepare_features(a, q=0.95)
    assert np.allclose(np.linalg.norm(p, axis=1), 1.0)
    qv = np.sort(np.abs(a).ravel())[int(0.95 * a.size)]
    assert np.allclose(p * np.linalg.norm(np.clip(a, -qv, qv), axis=1, keepdims=True),
                       np.clip(a, -qv, qv))
    assert np.allclose(prepare_features(a, q=1.0), a / np.linalg.norm(a, axis=1, keepdims=True))

    print("mutual_knn   ", mutual_knn(a, b2, k))
    print("cycle_knn    ", cycle_knn(a, b2, k))
    print("lcs_knn      ", lcs_knn(a, b2, k))
    print("edit_dist    ", edit_distance_knn(a, b2, k))
    print("cka          ", cka(a, b2))
    print("cka rbf      ", cka(a, b2, kernel='rbf', sigma=4.0))
    print("unbiased_cka ", unbiased_cka(a, b2))
    print("cknna        ", cknna(a, b2, k), cknna(a, b2, k, unbiased=False))
    print("svcca        ", svcca(a, b2, 10), svcca_via_cca(a, b2, 10))
    print("all reference self-checks passed")
