"""The embedded default data: a synthetic taobao click/buy log with known probabilities.

A fixed "world" of users and ads is drawn from the seed; impressions pair users and
ads with Zipf-like popularity. A hidden teacher gives each impression

  logit P(click)       = b_c + pid + user_bias[user] + ad_bias[ad] + cate_bias + brand_bias
                         + 0.7 <z_user, z_ad> / sqrt(K) + 0.8 [ad's category in user's tags]
  logit P(buy | click) = b_b + shopping_effect[shopping_level]
                         + 0.6 <z_user, M z_ad> / sqrt(K) - price_sensitivity[pvalue] * price

where z_user is built from the user's age/gender/segment plus a per-user part, z_ad
from its category and brand plus a per-ad part, and the tag lists are the categories
and brands the user likes (drawn from the same latents). So the probabilities depend
on user x ad interactions that only learned embeddings can reach. Labels are drawn:
clk ~ Bernoulli(P(click)), buy = clk * Bernoulli(P(buy | click)); a buy happens only
after a click. The teacher's P(click) and P(buy) = P(click) P(buy | click) are saved
beside each CSV (`<csv>.oracle.npz`, keyed by label name), so evaluation can report
oracle_auc_<tower>: the AUC that the true probabilities reach on the same labels; and
P(buy | click), keyed 'buy|clk', for ESMM's targets (CTCVR, and CVR on clicked rows).

The CSV has EasyRec's 20 taobao columns in input_fields order, no header,
`|`-separated tag lists.
"""

import os

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

COLUMNS = ('clk', 'buy', 'pid', 'adgroup_id', 'cate_id', 'campaign_id', 'customer', 'brand',
           'user_id', 'cms_segid', 'cms_group_id', 'final_gender_code', 'age_level',
           'pvalue_level', 'shopping_level', 'occupation', 'new_user_class_level',
           'tag_category_list', 'tag_brand_list', 'price')
PIDS = ('430548_1007', '430539_1007')

K = 4  # latent dimension of the teacher
NUM_USERS, NUM_ADS = 5000, 8000
NUM_CATES, NUM_BRANDS, NUM_CAMPAIGNS, NUM_CUSTOMERS = 100, 1000, 4000, 2000
NUM_LIKED = 5  # categories (and brands) each user likes: the source of the tag lists


def _zipf_weights(n, a, rng):
  w = 1.0 / np.arange(1, n + 1) ** a
  return rng.permutation(w / w.sum())  # popularity unrelated to the id's number


def _liked(z_user, item_latent, rng, chunk=4096):
  """NUM_LIKED items per user, drawn without replacement with P ~ exp(2 <z_user, latent>)."""
  out = np.empty((len(z_user), NUM_LIKED), np.int64)
  for s in range(0, len(z_user), chunk):
    scores = 2 * z_user[s:s + chunk] @ item_latent.T / np.sqrt(K)
    scores += rng.gumbel(size=scores.shape).astype(np.float32)  # Gumbel-top-k sampling
    out[s:s + chunk] = np.argpartition(-scores, NUM_LIKED, axis=1)[:, :NUM_LIKED]
  return out


class World:
  """Users, ads and the teacher's parameters, all drawn from one seed."""

  def __init__(self, seed):
    rng = np.random.default_rng((seed, 0))
    f32 = np.float32
    # Users: profile columns, and a latent built mostly from them.
    self.gender = rng.integers(1, 3, NUM_USERS)
    self.age = rng.integers(0, 7, NUM_USERS)
    self.cms_group = (self.gender - 1) * 7 + self.age  # as in taobao: gender x age group
    self.cms_seg = rng.integers(0, 98, NUM_USERS)
    self.pvalue = rng.integers(1, 4, NUM_USERS)
    self.shopping = rng.integers(1, 4, NUM_USERS)
    self.occupation = rng.integers(0, 2, NUM_USERS)
    self.new_user_class = rng.integers(1, 5, NUM_USERS)
    group_latent = rng.normal(0, 0.8, (14, K))
    seg_latent = rng.normal(0, 0.15, (98, K))
    self.z_user = (group_latent[self.cms_group] + seg_latent[self.cms_seg]).astype(f32)
    self.user_bias = rng.normal(0, 0.15, NUM_USERS)
    self.shopping_effect = np.array([0.0, -0.4, 0.0, 0.4])  # on buy, by shopping_level 1..3
    # Ads: category, brand, campaign, customer, price; latent from category and brand.
    cate_latent = rng.normal(0, 0.8, (NUM_CATES, K)).astype(f32)
    brand_latent = rng.normal(0, 0.15, (NUM_BRANDS, K)).astype(f32)
    self.cate = rng.integers(0, NUM_CATES, NUM_ADS)
    self.brand = rng.integers(0, NUM_BRANDS, NUM_ADS)
    self.campaign = rng.integers(0, NUM_CAMPAIGNS, NUM_ADS)
    self.customer = rng.integers(0, NUM_CUSTOMERS, NUM_ADS)
    self.price = rng.integers(1, 50, NUM_ADS)
    self.z_ad = (cate_latent[self.cate] + brand_latent[self.brand]).astype(f32)
    self.cate_bias = rng.normal(0, 0.4, NUM_CATES)
    self.brand_bias = rng.normal(0, 0.3, NUM_BRANDS)
    self.ad_bias = rng.normal(0, 0.15, NUM_ADS)
    self.liked_cates = _liked(self.z_user, cate_latent, rng)
    self.liked_brands = _liked(self.z_user, brand_latent, rng)
    self.buy_mix = rng.normal(0, 1, (K, K)).astype(f32)  # M: buy's view of the latents
    self.price_sensitivity = np.array([0.0, 0.04, 0.02, 0.0])  # by pvalue_level 1..3
    self.user_pop = _zipf_weights(NUM_USERS, 1.2, rng)
    self.ad_pop = _zipf_weights(NUM_ADS, 1.2, rng)

  def logit_terms(self, u, a, pid):
    """The teacher's additive logit terms for users u, ads a: (click terms, buy|click terms)."""
    zu, za = self.z_user[u], self.z_ad[a]
    click = dict(
        bias=np.full(len(u), -2.4), pid=0.3 * pid,
        ids=self.user_bias[u] + self.ad_bias[a],
        ad_attributes=self.cate_bias[self.cate[a]] + self.brand_bias[self.brand[a]],
        latent=0.7 * np.einsum('bk,bk->b', zu, za) / np.sqrt(K),
        in_tags=0.8 * (self.liked_cates[u] == self.cate[a][:, None]).any(axis=1))
    buy = dict(
        bias=np.full(len(u), -0.8), shopping=self.shopping_effect[self.shopping[u]],
        latent=0.6 * np.einsum('bk,kj,bj->b', zu, self.buy_mix, za) / np.sqrt(K),
        price=-self.price_sensitivity[self.pvalue[u]] * self.price[a])
    return click, buy

  def impressions(self, num_rows, rng):
    """Returns (columns: dict of numpy arrays, p_click, p_buy)."""
    u = rng.choice(NUM_USERS, num_rows, p=self.user_pop)
    a = rng.choice(NUM_ADS, num_rows, p=self.ad_pop)
    pid = rng.integers(0, 2, num_rows)
    click, buy = self.logit_terms(u, a, pid)
    p_click = 1 / (1 + np.exp(-sum(click.values())))
    p_buy_given_click = 1 / (1 + np.exp(-sum(buy.values())))
    clk = rng.random(num_rows) < p_click
    buy = clk & (rng.random(num_rows) < p_buy_given_click)
    # Tags: a random-length prefix (1..NUM_LIKED) of the user's liked lists.
    n_cate = rng.integers(1, NUM_LIKED + 1, num_rows)
    n_brand = rng.integers(1, NUM_LIKED + 1, num_rows)
    columns = dict(
        clk=clk.astype(np.int32), buy=buy.astype(np.int32), pid=np.array(PIDS)[pid],
        adgroup_id=a, cate_id=self.cate[a], campaign_id=self.campaign[a],
        customer=self.customer[a], brand=self.brand[a], user_id=u,
        cms_segid=self.cms_seg[u], cms_group_id=self.cms_group[u],
        final_gender_code=self.gender[u], age_level=self.age[u],
        pvalue_level=self.pvalue[u], shopping_level=self.shopping[u],
        occupation=self.occupation[u], new_user_class_level=self.new_user_class[u],
        tag_category_list=_join_prefix(self.liked_cates[u], n_cate),
        tag_brand_list=_join_prefix(self.liked_brands[u], n_brand),
        price=self.price[a].astype(np.int32))
    return columns, p_click, p_click * p_buy_given_click


def _join_prefix(ids, lengths):
  """Rows of `ids` [N, L] cut to `lengths` and joined with '|', as an arrow string array."""
  keep = np.arange(ids.shape[1])[None, :] < lengths[:, None]
  offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
  values = pa.array(ids[keep]).cast(pa.string())
  return pc.binary_join(pa.ListArray.from_arrays(offsets, values), '|')


def write_csv(path, num_rows, seed, split):
  """Writes `num_rows` impressions of the seed's world to `path` (+ `<path>.oracle.npz`).

  `split` names an independent stream of impressions (e.g. 'train', 'eval'), so the
  train and eval files share one world but no rows. Deterministic in (seed, split).
  """
  world = World(seed)
  rng = np.random.default_rng((seed, 1, sum(map(ord, split))))
  columns, p_click, p_buy = world.impressions(num_rows, rng)
  table = pa.table({name: _to_arrow(columns[name]) for name in COLUMNS})
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = f'{path}.tmp'
  # Oracle first, CSV last: an existing CSV implies a complete pair.
  np.savez(f'{path}.oracle.npz', clk=p_click.astype(np.float32), buy=p_buy.astype(np.float32),
           **{'buy|clk': (p_buy / p_click).astype(np.float32)})
  pa_csv.write_csv(table, tmp, pa_csv.WriteOptions(include_header=False,
                                                   quoting_style='none'))
  os.replace(tmp, path)


def _to_arrow(values):
  if isinstance(values, (pa.Array, pa.ChunkedArray)):
    return values
  if values.dtype == np.int32:  # labels and price stay numeric
    return pa.array(values)
  return pa.array(values).cast(pa.string())
