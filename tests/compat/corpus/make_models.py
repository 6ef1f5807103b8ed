"""Make the model files (and binary request bodies) of the compat corpus.

Every function writes, into its case folder, the files under the names the case's published score.py
expects, from data shipped inside scikit-learn (load_diabetes, load_iris) or drawn with fixed seeds.
Run it with the Python of the venv the case is served from (record.py does), so the pickles match the
scikit-learn that loads them:

    python make_models.py CASE [CASE ...]     # or: --all
    python make_models.py --versions          # prints the versions used, as JSON
"""
import io
import json
import os
import pickle
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def _out(case, rel):
    path = os.path.join(HERE, case, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return path


def _joblib_dump(obj, case, rel):
    import joblib
    joblib.dump(obj, _out(case, rel))


def _diabetes():
    from sklearn.datasets import load_diabetes
    return load_diabetes(return_X_y=True)


def _ridge_diabetes():
    from sklearn.linear_model import Ridge
    x, y = _diabetes()
    return Ridge().fit(x, y)


# ---------------------------------------------------------------- v1

def v1_mlnb_deploy_to_cloud_numpy(case):
    # notebook cell 8: Ridge().fit(load_diabetes); dill.dump(model, open('sklearn_regression_model.pkl', 'wb'))
    with open(_out(case, "models/sklearn_regression_model.pkl"), "wb") as f:
        pickle.dump(_ridge_diabetes(), f, protocol=4)


def v1_mlnb_train_within_notebook_get_model_path(case):
    import numpy as np
    from sklearn.linear_model import Ridge
    from sklearn.metrics import mean_squared_error
    from sklearn.model_selection import train_test_split
    x, y = _diabetes()
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=0)
    best = None
    for alpha in np.arange(0.0, 1.0, 0.05):
        model = Ridge(alpha=alpha).fit(x_train, y_train)
        mse = mean_squared_error(y_test, model.predict(x_test))
        if best is None or mse < best[0]:
            best = (mse, model)
    _joblib_dump(best[1], case, "models/model.pkl")


def v1_mlnb_multi_model_get_model_path(case):
    from sklearn.linear_model import BayesianRidge, Ridge
    x, y = _diabetes()
    _joblib_dump(Ridge().fit(x, y), case, "models/first_model.pkl")
    _joblib_dump(BayesianRidge().fit(x, y), case, "models/second_model.pkl")


def v1_aex_deploy_local_echo_str(case):
    pass  # no model


def v1_mlnb_data_drift_collector(case):
    import numpy as np
    from sklearn.linear_model import LinearRegression
    rng = np.random.RandomState(0)
    # latitude, longitude, temperature, windAngle, windSpeed -> elevation
    x = np.column_stack([rng.uniform(25, 50, 500), rng.uniform(-125, -70, 500), rng.uniform(-10, 40, 500),
                         rng.uniform(0, 360, 500), rng.uniform(0, 20, 500)])
    y = 2000 - 15 * x[:, 2] + 8 * (x[:, 0] - 25) + rng.normal(0, 50, 500)
    _joblib_dump(LinearRegression().fit(x, y), case, "models/elevation-regression-model.pkl")


# ---------------------------------------------------------------- v2

def v2_aex_blue_model1(case):
    _joblib_dump(_ridge_diabetes(), case, "model-1/model/sklearn_regression_model.pkl")


def v2_aex_green_model2(case):
    _joblib_dump(_ridge_diabetes(), case, "model-2/model/sklearn_regression_model.pkl")


def _iris_pkl(case):
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    x, y = load_iris(return_X_y=True)
    _joblib_dump(LogisticRegression(max_iter=1000).fit(x, y), case, "models/iris.pkl")


v2_aex_inference_schema_numpy = _iris_pkl
v2_aex_inference_schema_pandas = _iris_pkl
v2_aex_inference_schema_standard = _iris_pkl


def v2_aex_openapi_custom(case):
    _joblib_dump(_ridge_diabetes(), case, "model-1/model/sklearn_regression_model.pkl")


v2_aex_openapi_decorated = v2_aex_openapi_custom


def v2_aex_custom_container_multimodel(case):
    from sklearn.datasets import load_diabetes, load_iris
    from sklearn.linear_model import LinearRegression, LogisticRegression
    d = load_diabetes(as_frame=True)
    _joblib_dump(LinearRegression().fit(d.data, d.target), case, "models/diabetes.sav")
    i = load_iris(as_frame=True)
    _joblib_dump(LogisticRegression(max_iter=1000).fit(i.data, i.target), case, "models/iris.sav")


# binary payload requests: multipart bodies with a fixed boundary and images drawn with Pillow

BOUNDARY = b"corpusboundary"


def _image(size, color, fmt):
    from PIL import Image, ImageDraw
    img = Image.new("RGB", size, color)
    draw = ImageDraw.Draw(img)
    draw.rectangle([size[0] // 4, size[1] // 4, size[0] // 2, size[1] // 2], fill=(255, 255, 255))
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def _multipart(parts):
    out = b""
    for field, filename, ctype, data in parts:
        out += b"--" + BOUNDARY + b"\r\n"
        out += b'Content-Disposition: form-data; name="%s"; filename="%s"\r\n' % (field.encode(), filename.encode())
        out += b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + data + b"\r\n"
    return out + b"--" + BOUNDARY + b"--\r\n"


def v2_aex_binary_payload_single_file(case):
    with open(_out(case, "requests/single-file.multipart"), "wb") as f:
        f.write(_multipart([("file", "input.png", "image/png", _image((64, 48), (200, 30, 30), "PNG"))]))
    with open(_out(case, "requests/no-file.multipart"), "wb") as f:
        f.write(_multipart([("other", "note.txt", "text/plain", b"no image here")]))


def v2_aex_binary_payload_multi_file(case):
    with open(_out(case, "requests/two-files.multipart"), "wb") as f:
        f.write(_multipart([("file[]", "a.png", "image/png", _image((64, 48), (30, 200, 30), "PNG")),
                            ("file[]", "b.jpg", "image/jpeg", _image((20, 30), (30, 30, 200), "JPEG"))]))


def versions():
    out = {}
    for mod, name in (("sklearn", "scikit-learn"), ("numpy", "numpy"), ("joblib", "joblib"), ("PIL", "pillow"),
                      ("pandas", "pandas"), ("scipy", "scipy")):
        try:
            out[name] = __import__(mod).__version__
        except ImportError:
            pass
    return out


CASES = sorted(n for n, v in globals().items() if n.startswith(("v1_", "v2_")) and callable(v))

if __name__ == "__main__":
    args = sys.argv[1:]
    if args == ["--versions"]:
        print(json.dumps(versions()))
        sys.exit(0)
    for case in (CASES if args == ["--all"] else args):
        globals()[case](case)
        print("made", case)
