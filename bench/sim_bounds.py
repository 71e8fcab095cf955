# How many point-passes of exact Lloyd k-means could bounds skip? A numpy simulation on
# make_blobs-like data (uniform centres in [-10, 10]^d, Gaussian spread 6), from faiss's kind of
# random init: per iteration, the share of points that Hamerly's bounds (one upper, one lower
# bound per point; "tight" = after recomputing the upper bound) and Yinyang's group bounds
# (T groups of centroids from a k-means of the initial centroids) would settle.
# Usage: python3 bench/sim_bounds.py N CENTRES K [T]   e.g. 200000 400 205 20 (bench/plugin/NOTES.md)
# Needs numpy and scikit-learn (bench/requirements-peers.txt).
import numpy as np, sys
rng=np.random.default_rng(1)
n,d,nc,K=int(sys.argv[1]),128,int(sys.argv[2]),int(sys.argv[3]); spread=6.0
C=rng.uniform(-10,10,(nc,d)); lab=rng.integers(0,nc,n)
X=(C[lab]+spread*rng.standard_normal((n,d))).astype(np.float32).astype(np.float64)
cent=X[rng.permutation(n)[:K]].copy()
x2=(X*X).sum(1)
def dists(cent):
    D=x2[:,None]-2*X@cent.T+(cent*cent).sum(1)[None,:]
    return np.sqrt(np.maximum(D,0))
T=int(sys.argv[4]) if len(sys.argv)>4 else 0
prev=None
for it in range(10):
    D=dists(cent)
    a=D.argmin(1)
    if prev is not None:
        pa,u,l,lg,groups=prev
        drift=np.sqrt(((cent-pc)**2).sum(1))
        # Hamerly
        dm=drift.max()
        # max drift excluding own: use second max when own is argmax
        order=np.argsort(drift); m1=drift[order[-1]]; m2=drift[order[-2]]
        excl=np.where(pa==order[-1],m2,m1)
        U=u+drift[pa]; L=l-excl
        skip1=(U<L)
        ut=D[np.arange(n),pa]  # tightened upper
        skip2=(ut<L)
        # Yinyang groups
        if T:
            gd=np.array([drift[groups==g].max() for g in range(T)])
            LG=lg-gd[None,:]
            # own group: lower bound among others in group: approximate using group max drift
            ok=(ut[:,None]<LG).all(1)
            sy=ok.mean()
        else: sy=float('nan')
        assert (a[skip2]==pa[skip2]).all()
        print(f"it{it}: changed {np.mean(a!=pa):.4f} maxdrift {dm:.3f} median drift {np.median(drift):.3f}  hamerly skip {skip1.mean():.3f} tight {skip2.mean():.3f} yinyang{T} {sy:.3f}")
    s=np.sort(D,1)
    u=s[:,0]; l=s[:,1]
    if T:
        groups=np.arange(K)%T  # naive groups
        # better groups: kmeans of centroids
        from sklearn.cluster import KMeans as SK
        groups=SK(T,n_init=1,random_state=0).fit(cent).labels_
        lg=np.full((n,T),np.inf)
        for g in range(T):
            Dg=D[:,groups==g].copy()
            # exclude own centroid
            idx=np.where(groups==g)[0]
            own=(groups[a]==g)
            Dg2=Dg.copy()
            pos=np.searchsorted(idx,a[own])
            Dg2[np.where(own)[0],pos]=np.inf
            lg[:,g]=Dg2.min(1)
    else: lg=None; groups=None
    prev=(a,u,l,lg,groups); pc=cent.copy()
    cnt=np.bincount(a,minlength=K); S=np.zeros((K,d)); np.add.at(S,a,X)
    nz=cnt>0; cent[nz]=S[nz]/cnt[nz,None]
