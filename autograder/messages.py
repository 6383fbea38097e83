"""Student-facing message catalogue, Korean first with English available.

The language comes from ``set_language`` or the environment variable ``AUTOGRADER_LANG``
(``ko`` or ``en``; default ``ko``). Each message has a stable key, which reports use to count
failure reasons, and a template per language filled with ``str.format`` fields.
"""

import os

LANGUAGES = ("ko", "en")
_language = None

CATALOGUE = {
    # Building and running the model.
    "build.cuda": (
        "모델을 만드는 중 CUDA를 요구했습니다: {error}. 채점 환경에는 GPU가 없습니다. "
        "클래스 안에서 .cuda()나 device='cuda'를 쓰지 말고, 모델을 만든 뒤 .to(device)로 옮기세요.",
        "Building the model requested CUDA: {error}. The grader has no GPU. Do not call .cuda() or use "
        "device='cuda' inside the class; move the model with .to(device) after building it.",
    ),
    "build.error": (
        "{call} 실행 중 {error_type} 예외가 발생했습니다{error}. __init__을 완성했는지 확인하세요.",
        "{call} raised {error_type}{error}. Check that __init__ is complete.",
    ),
    "build.not_module": (
        "{name}은(는) nn.Module을 상속한 클래스여야 합니다 (받은 값: {actual}).",
        "{name} must be a class derived from nn.Module (got {actual}).",
    ),
    "run.error": (
        "forward 실행 중 {error_type} 예외가 발생했습니다 (입력 {shape}){error}",
        "forward raised {error_type} for an input of shape {shape}{error}",
    ),
    "run.input_channels": (
        "첫 conv가 {actual}채널 입력을 기대하지만 입력 이미지는 3채널(RGB)입니다. conv1_1의 in_channels를 확인하세요.",
        "The first conv expects {actual} input channels, but the input images have 3 (RGB). "
        "Check the in_channels of conv1_1.",
    ),
    "run.not_tensor": (
        "forward는 텐서 하나를 반환해야 하는데 {actual}을(를) 반환했습니다. return 문을 확인하세요.",
        "forward must return one tensor, but it returned {actual}. Check the return statement.",
    ),
    "run.params_changed": (
        "forward를 실행하자 모델의 파라미터가 바뀌었습니다 ({names}). 레이어는 forward가 아니라 __init__에서 만드세요.",
        "Running forward changed the model's parameters ({names}). Create layers in __init__, not in forward.",
    ),

    # Layer sequence (convolutional part and classifier).
    "layers.changed": (
        "{where}: 기대 {expected}, 실제 {actual}.",
        "{where}: expected {expected}, got {actual}.",
    ),
    "layers.missing": (
        "{where}: {expected}이(가) 없습니다 (그 자리에 {actual}).",
        "{where}: {expected} is missing ({actual} is in its place).",
    ),
    "layers.extra": (
        "{where} 자리에 기대하지 않은 {actual}이(가) 있습니다.",
        "An unexpected {actual} appears at {where}.",
    ),
    "layers.truncated": (
        "{where}: 기대 {expected}, 실제: 모델의 레이어가 여기서 끝납니다.",
        "{where}: expected {expected}, but the model has no more layers.",
    ),
    "hint.batchnorm": (
        "힌트: 3×3 conv마다 뒤에 BatchNorm2d가 오나요?",
        "Hint: is every 3x3 conv followed by BatchNorm2d?",
    ),
    "hint.relu": (
        "힌트: 정규화나 Linear 뒤에 ReLU가 적용되나요?",
        "Hint: is ReLU applied after the normalisation or Linear layer?",
    ),
    "hint.pool": (
        "힌트: 블록 {block}이(가) 2×2 max-pool(stride 2)로 끝나나요?",
        "Hint: does block {block} end with a 2x2 max-pool (stride 2)?",
    ),
    "hint.conv": (
        "힌트: 입력/출력 채널 수, kernel_size, padding을 설정표와 비교하세요.",
        "Hint: compare in/out channels, kernel_size and padding with the configuration table.",
    ),
    "hint.dropout": (
        "힌트: 은닉 Linear 레이어 뒤에 ReLU와 Dropout이 순서대로 오나요?",
        "Hint: does each hidden Linear layer have ReLU and then Dropout after it?",
    ),
    "hint.linear": (
        "힌트: 512·7·7=25088 → 4096 → 4096 → num_classes 크기를 확인하세요.",
        "Hint: check the sizes 512*7*7=25088 -> 4096 -> 4096 -> num_classes.",
    ),
    "hint.extra": (
        "힌트: 과제 설명에 없는 레이어를 지우세요.",
        "Hint: remove layers that the assignment does not describe.",
    ),

    # Shapes after the pools.
    "pools.wrong_shape": (
        "pool{block} 뒤 feature map: 기대 {expected}, 실제 {actual}.",
        "Feature map after pool{block}: expected {expected}, got {actual}.",
    ),
    "pools.no_pool": (
        "블록 {block} 끝에 pooling이 없습니다: pool{block} 뒤 기대 {expected}, 실제 {actual}.",
        "Block {block} ends without pooling: after pool{block} expected {expected}, got {actual}.",
    ),
    "pools.missing": (
        "pool{block}이(가) 실행되지 않습니다: 기대 {expected}, 실제 pooling 레이어 {count}개만 실행됨.",
        "pool{block} never runs: expected {expected}, but only {count} pooling layers run.",
    ),
    "features.not_equivalent": (
        "같은 가중치를 넣었을 때 블록 {block}의 출력이 VGG11과 다릅니다 (최대 차이 {difference:.3g}). "
        "레이어 순서와 forward에서 각 레이어를 실제로 적용하는지 확인하세요.",
        "With the same weights, the output of block {block} differs from VGG11 (max difference "
        "{difference:.3g}). Check the layer order and that forward applies every layer.",
    ),
    "features.mode_shape": (
        "{mode} 모드에서 블록 {block}의 출력 shape이 VGG11과 다릅니다. forward가 self.training에 따라 "
        "다른 레이어를 쓰지 않는지 확인하세요.",
        "In {mode} mode, the output of block {block} has another shape than in VGG11. Check that forward "
        "does not choose other layers depending on self.training.",
    ),
    "features.train_not_equivalent": (
        "train 모드(BatchNorm이 batch 통계를 쓸 때)에서 같은 가중치를 넣었을 때 블록 {block}의 출력이 VGG11과 "
        "다릅니다 (최대 차이 {difference:.3g}). forward가 self.training에 따라 다르게 계산하지 않는지 확인하세요.",
        "In train mode (BatchNorm with batch statistics), with the same weights, the output of block {block} "
        "differs from VGG11 (max difference {difference:.3g}). Check that forward does not compute something "
        "else depending on self.training.",
    ),
    "features.not_compared": (
        "같은 가중치를 넣어 VGG11과 계산을 비교할 수 없었습니다. 모든 conv와 BatchNorm의 가중치가 "
        "nn.Parameter로 등록되어 있는지 (plain tensor 속성이 아닌지) 확인하세요.",
        "The model could not be compared with VGG11 under the same weights. Check that the weights of "
        "every conv and BatchNorm layer are registered as nn.Parameter, not kept as plain tensor attributes.",
    ),
    "features.not_runnable": (
        "같은 가중치를 넣은 forward를 실행하지 못했습니다: {error}",
        "Forward with the same weights failed to run: {error}",
    ),

    # Classifier.
    "classifier.no_linear": (
        "classifier가 없습니다: forward에서 Linear 레이어가 하나도 실행되지 않습니다.",
        "There is no classifier: forward runs no Linear layer.",
    ),
    "classifier.output_shape": (
        "모델 출력: 기대 {expected}, 실제 {actual}.",
        "Model output: expected {expected}, got {actual}.",
    ),
    "classifier.num_classes_ignored": (
        "VGG11(num_classes={num_classes})의 출력: 기대 {expected}, 실제 {actual}. "
        "마지막 Linear의 출력 크기에 num_classes 인자를 쓰세요.",
        "Output of VGG11(num_classes={num_classes}): expected {expected}, got {actual}. "
        "Use the num_classes argument for the last Linear layer's output size.",
    ),
    "classifier.num_classes_not_compared": (
        "VGG11(num_classes={num_classes})을 같은 가중치로 VGG11과 비교할 수 없었습니다. "
        "num_classes가 마지막 Linear의 출력 크기만 바꾸는지 확인하세요.",
        "VGG11(num_classes={num_classes}) could not be compared with VGG11 under the same weights. Check that "
        "num_classes changes only the output size of the last Linear layer.",
    ),
    "classifier.batch_merged": (
        "fc1의 입력: 기대 {expected}, 실제 {actual}. flatten이 batch 차원을 합쳤습니다. "
        "torch.flatten(x, 1)이나 x.view(x.size(0), -1)처럼 batch 차원을 유지하세요.",
        "Input of fc1: expected {expected}, got {actual}. Flattening merged the batch dimension; keep it "
        "with torch.flatten(x, 1) or x.view(x.size(0), -1).",
    ),
    "classifier.fc_input": (
        "fc1 (classifier[0])의 입력: 기대 {expected}, 실제 {actual}. 이 Linear는 {in_features}개를 받도록 "
        "만들어져 forward가 여기서 멈춥니다. 힌트: pool5 뒤 feature map이 (N, 512, 7, 7)이고 flatten이 "
        "512·7·7=25088개를 만드나요?",
        "Input of fc1 (classifier[0]): expected {expected}, got {actual}. This Linear layer takes "
        "{in_features} features, so forward stops here. Hint: is the feature map after pool5 (N, 512, 7, 7), "
        "and does flattening give 512*7*7=25088 values?",
    ),
    "classifier.not_equivalent": (
        "같은 가중치를 넣었을 때 classifier의 출력이 VGG11과 다릅니다 (최대 차이 {difference:.3g}). "
        "Linear, ReLU, Dropout의 순서와 flatten을 확인하세요.",
        "With the same weights, the classifier output differs from VGG11 (max difference {difference:.3g}). "
        "Check the order of Linear, ReLU and Dropout, and the flattening.",
    ),

    # Fine-tuning.
    "finetune.missing": (
        "model_finetune이 만들어지지 않았습니다 (값: {actual}). finetune_model 셀을 완성하고 실행하세요.",
        "model_finetune was not built (value: {actual}). Complete and run the finetune_model cell.",
    ),
    "finetune.not_vgg": (
        "model_finetune에 features와 classifier가 있어야 합니다 (torchvision VGG11). 받은 값: {actual}.",
        "model_finetune must have features and classifier (a torchvision VGG11). Got {actual}.",
    ),
    "finetune.head": (
        "classifier[6]: 기대 Linear(4096, 10), 실제 {actual}. 마지막 레이어만 새 Linear로 바꾸세요.",
        "classifier[6]: expected Linear(4096, 10), got {actual}. Replace only the last layer with a new Linear.",
    ),
    "finetune.features_trainable": (
        "features의 파라미터 {count}개가 아직 학습됩니다 (requires_grad=True): {names}.",
        "{count} parameters of features still train (requires_grad=True): {names}.",
    ),
    "finetune.typo": (
        "힌트: 'require_grad' 속성이 설정된 파라미터가 있습니다. 속성 이름은 requires_grad입니다.",
        "Hint: some parameters have an attribute 'require_grad'. The attribute is named requires_grad.",
    ),
    "finetune.classifier_frozen": (
        "classifier의 파라미터 {count}개가 고정되었습니다 (requires_grad=False): {names}. "
        "features만 고정하세요.",
        "{count} parameters of classifier are frozen (requires_grad=False): {names}. Freeze only features.",
    ),
    "finetune.step_features_changed": (
        "optimizer step 한 번 뒤 features 가중치가 바뀌었습니다: {names}.",
        "After one optimizer step, features weights changed: {names}.",
    ),
    "finetune.step_classifier_unchanged": (
        "optimizer step 한 번 뒤에도 classifier 가중치가 그대로입니다: {names}.",
        "After one optimizer step, classifier weights did not change: {names}.",
    ),
    "finetune.step_error": (
        "model_finetune으로 학습 한 단계를 실행하지 못했습니다: {error_type}: {error}",
        "One training step on model_finetune failed: {error_type}: {error}",
    ),

    # What the grader could judge from the kernel's hand-in (see autograder.judge).
    "handin.missing": (
        "채점기가 이 테스트 셀에서 모델을 넘겨받지 못했습니다{reason}. 답안 셀과 그 앞의 셀이 오류 없이 끝나는지 확인하세요.",
        "The grader received no model from this test cell{reason}. Check that the answer cell and the cells "
        "before it finish without errors.",
    ),
    "handin.invalid": (
        "채점기가 넘겨받은 모델 기록을 받아들이지 않았습니다: {detail}",
        "The grader did not accept the model record it received: {detail}",
    ),
    "handin.reason_error": (": 셀이 {error}로 끝났습니다", ": the cell ended with {error}"),
    "handin.reason_limit": (": {limit}", ": {limit}"),
    "verdict.passed": ("채점 결과: 통과 (숨겨진 검사 포함)", "Grader's verdict: passed (hidden tests included)"),

    # Labels used inside messages.
    "label.after": ("{layer} 다음 {what}", "{what} after {layer}"),
    "label.pool": ("pool{block}", "pool{block}"),
    "label.end": ("마지막 레이어 뒤", "after the last layer"),
    "label.none": ("없음", "none"),

    # Reports and tables.
    "report.failed": ("{check}: {count}개 항목 실패", "{check}: {count} item(s) failed"),
    "report.passed": ("통과", "passed"),
    "report.failed_short": ("실패", "failed"),
    "table.stage": ("단계", "stage"),
    "table.expected": ("기대", "expected"),
    "table.actual": ("내 모델", "your model"),
    "table.check": ("검사", "check"),
    "table.result": ("결과", "result"),
    "table.detail": ("내용", "detail"),
    "table.input": ("입력", "input"),
    "table.output": ("출력", "output"),
}


def set_language(language):
    """Select the message language for this process: "ko" or "en"."""
    global _language
    if language not in LANGUAGES:
        raise ValueError(f"unknown language {language!r}; use one of {LANGUAGES}")
    _language = language


def language():
    if _language is not None:
        return _language
    value = os.environ.get("AUTOGRADER_LANG", "ko").lower()
    return value if value in LANGUAGES else "ko"


def text(key, **fields):
    """Return the message ``key`` in the current language, filled with ``fields``."""
    template = CATALOGUE[key][LANGUAGES.index(language())]
    return template.format(**fields)
